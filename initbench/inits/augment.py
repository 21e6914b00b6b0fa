"""SimCLR's data augmentations for small (32 px) images, batched and seeded.

Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations",
Appendix A: random resized crop + horizontal flip, colour distortion (jitter with strength
``s``, then random grayscale). The Gaussian blur is left out, as the paper does for its
32 px CIFAR-10 experiments (Appendix B.9).

Every image in a batch gets its own random parameters, all drawn from the caller's
``torch.Generator`` (never the global RNG), so one generator seed gives the same views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights for R, G, B (torchvision rounds the red one to 0.2989).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Columns of the (B, N_DRAWS) uniform draw, one row per image. All are drawn whatever the
# config, so changing a probability does not shift the other parameters of a seed.
(
    _SCALE,
    _RATIO,
    _CENTER_X,
    _CENTER_Y,
    _FLIP,
    _JITTER,
    _BRIGHTNESS,
    _CONTRAST,
    _SATURATION,
    _HUE,
    _GRAY,
) = range(11)
N_DRAWS = 11


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of :func:`simclr_view`; the defaults are SimCLR's CIFAR-10 ones (s = 0.5).

    ``color_jitter_strength`` is the paper's ``s``: brightness, contrast and saturation
    factors are drawn from ``[max(0, 1 - 0.8 s), 1 + 0.8 s]`` and the hue shift from
    ``[-0.2 s, 0.2 s]`` (fraction of the colour wheel), as torchvision's ``ColorJitter``.

    Raises:
        ValueError: a field is out of range; the message names the field.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    color_jitter_strength: float = 0.5
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2

    def __post_init__(self) -> None:
        low, high = _pair(self.crop_scale, "crop_scale")
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"crop_scale must be (low, high) area fractions with 0 < low <= high <= 1, "
                f"got {self.crop_scale}"
            )
        low, high = _pair(self.crop_ratio, "crop_ratio")
        if not 0 < low <= high < math.inf:
            raise ValueError(
                f"crop_ratio must be (low, high) width/height ratios with 0 < low <= high, "
                f"got {self.crop_ratio}"
            )
        for name in ("flip_p", "color_jitter_p", "grayscale_p"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {value}")
        if not 0 <= self.color_jitter_strength < math.inf:
            raise ValueError(
                f"color_jitter_strength must be a finite number >= 0 (SimCLR uses 0.5 on "
                f"CIFAR-10, 1.0 on ImageNet), got {self.color_jitter_strength}"
            )


def _pair(value: object, name: str) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    return float(value[0]), float(value[1])


def simclr_view(
    images: torch.Tensor,
    generator: torch.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> torch.Tensor:
    """One random SimCLR view of each image: ``(B, C, H, W)`` in [0, 1] -> same shape.

    In order, each with its own parameters per image:

    1. random resized crop: area fraction uniform in ``crop_scale``, aspect ratio
       log-uniform in ``crop_ratio``, each side clipped to fit the image (so a clipped crop
       has a smaller area), centre uniform over the positions that keep it inside; resampled
       back to ``H x W`` with bilinear ``grid_sample`` (border padding, continuous coordinates
       rather than whole pixels);
    2. horizontal flip with ``flip_p`` (folded into the crop's sampling grid: same result);
    3. with ``color_jitter_p``, colour jitter in the fixed order brightness, contrast,
       saturation, hue, each clamped to [0, 1] as torchvision does; saturation and hue only
       when ``C == 3``. The hue shift goes through a vectorized RGB -> HSV -> RGB;
    4. with ``grayscale_p`` and ``C == 3`` only, BT.601 luma copied to all 3 channels.

    Parameters are drawn on CPU from ``generator`` (one ``(B, 11)`` uniform draw per call)
    and moved to ``images.device``; the global RNG is not touched.

    Raises:
        ValueError: ``images`` is not a floating ``(B, C, H, W)`` tensor with ``C`` 1 or 3,
            or ``generator`` is not a CPU generator.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"simclr_view needs images of shape (B, C, H, W) with C 1 or 3, got "
            f"{tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"simclr_view needs float images in [0, 1], got {images.dtype}; divide uint8 by 255"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"simclr_view draws its parameters on CPU, pass a CPU torch.Generator, "
            f"got one on {generator.device}"
        )
    batch, channels = images.shape[:2]
    # float64 on CPU, so a seed gives the same parameters whatever the dtype and device.
    u_cpu = torch.rand(batch, N_DRAWS, generator=generator, dtype=torch.float64)
    u = u_cpu.to(device=images.device, dtype=images.dtype)

    views = _crop_and_flip(images, u_cpu, config)
    if config.color_jitter_p > 0:
        jittered = _color_jitter(views, u, config.color_jitter_strength)
        apply = (u_cpu[:, _JITTER] < config.color_jitter_p).view(-1, 1, 1, 1).to(images.device)
        views = torch.where(apply, jittered, views)
    if channels == 3 and config.grayscale_p > 0:
        gray = _grayscale(views).expand_as(views)
        apply = (u_cpu[:, _GRAY] < config.grayscale_p).view(-1, 1, 1, 1).to(images.device)
        views = torch.where(apply, gray, views)
    return views


def _uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _crop_and_flip(images: torch.Tensor, u: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    # (B, C, H, W) -> (B, C, H, W); u is the (B, N_DRAWS) float64 CPU draw. Crop sides are
    # fractions of the image side, in the [-1, 1] coordinates of affine_grid(align_corners=
    # False), which span the pixel edges.
    batch, _, height, width = images.shape
    scale = _uniform(u[:, _SCALE], *config.crop_scale)
    log_low, log_high = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    ratio = torch.exp(_uniform(u[:, _RATIO], log_low, log_high))  # crop width / height
    # w * h = scale and (w * width) / (h * height) = ratio, then clipped to the image.
    crop_w = torch.sqrt(scale * ratio * height / width).clamp(max=1.0)
    crop_h = torch.sqrt(scale / ratio * width / height).clamp(max=1.0)
    center_x = (1 - crop_w) * _uniform(u[:, _CENTER_X], -1.0, 1.0)
    center_y = (1 - crop_h) * _uniform(u[:, _CENTER_Y], -1.0, 1.0)
    flip = torch.where(u[:, _FLIP] < config.flip_p, -1.0, 1.0).to(u.dtype)
    zero = torch.zeros_like(scale)
    theta = torch.stack(
        [
            torch.stack([crop_w * flip, zero, center_x], dim=1),
            torch.stack([zero, crop_h, center_y], dim=1),
        ],
        dim=1,
    ).to(device=images.device, dtype=images.dtype)  # (B, 2, 3): output (x, y, 1) -> input (x, y)
    grid = F.affine_grid(theta, [batch, images.shape[1], height, width], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    # (B, C, H, W) -> (B, 1, H, W); a 1-channel image is its own luma.
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # factor (B, 1, 1, 1): 1 keeps images, 0 gives other; clamped like torchvision's _blend.
    return (factor * images + (1 - factor) * other).clamp(0.0, 1.0)


def _color_jitter(images: torch.Tensor, u: torch.Tensor, strength: float) -> torch.Tensor:
    # (B, C, H, W) -> (B, C, H, W), every image jittered with its own factors.
    def factor(column: int, amount: float) -> torch.Tensor:
        return _uniform(u[:, column], max(0.0, 1 - amount), 1 + amount).view(-1, 1, 1, 1)

    images = (images * factor(_BRIGHTNESS, 0.8 * strength)).clamp(0.0, 1.0)
    mean = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    images = _blend(images, mean, factor(_CONTRAST, 0.8 * strength))
    if images.shape[1] == 3:
        images = _blend(images, _grayscale(images), factor(_SATURATION, 0.8 * strength))
        shift = _uniform(u[:, _HUE], -0.2 * strength, 0.2 * strength).view(-1, 1, 1)
        hue, saturation, value = _rgb_to_hsv(images).unbind(dim=1)
        images = _hsv_to_rgb(torch.stack([(hue + shift) % 1.0, saturation, value], dim=1))
    return images


def _rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    # (B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) HSV, all channels in [0, 1].
    red, green, blue = images.unbind(dim=1)
    max_c = images.amax(dim=1)
    min_c = images.amin(dim=1)
    chroma = max_c - min_c
    saturation = chroma / torch.where(max_c > 0, max_c, torch.ones_like(max_c))
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    is_red = max_c == red
    is_green = (max_c == green) & ~is_red
    hue = torch.where(
        is_red,
        (green - blue) / safe,
        torch.where(is_green, 2 + (blue - red) / safe, 4 + (red - green) / safe),
    )
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    return torch.stack([(hue / 6) % 1.0, saturation, max_c], dim=1)


def _hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    # (B, 3, H, W) HSV -> RGB: channel n in (5, 3, 1) for R, G, B is
    # V - V S clamp(min(k, 4 - k), 0, 1) with k = (n + 6 H) mod 6.
    hue, saturation, value = images.unbind(dim=1)
    offsets = images.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
    k = (offsets + 6 * hue.unsqueeze(1)) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0.0, 1.0)
    return value.unsqueeze(1) * (1 - saturation.unsqueeze(1) * ramp)
