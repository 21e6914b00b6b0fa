"""What every benchmark measures on: generated images, and the models of ``params.yaml``.

Models come from the repo's ``params.yaml`` (sections ``data``, ``model`` and ``simclr``)
through the library's own builders, so a bench times the architecture the pipeline
trains, and a bare baseline loop raced against the library runs that same model: no
bench spells out a width, a dropout rate or a projector size.

Images are generated, never downloaded or kept in the repo: :func:`gratings` (tensors
whose class is easy to learn, so a probe's accuracy means something), written out as
PNG files by :func:`write_image_folder`; :func:`generate_jpegs` (mixed-size JPEG files
that cost what small web photos cost to decode).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from initbench.inits.autoencoder import AutoEncoder, build_autoencoder
from initbench.inits.simclr import SimCLR, build_simclr
from initbench.models.cnn import Classifier, Encoder, build_classifier, seeded_encoder
from initbench.params import Params, load_params, parse_params

#: Classes of every generated image set.
CLASSES = 10
#: Sides of :func:`generate_jpegs`' images, in pixels, each side drawn independently.
MIXED_SIDES = (40, 800)
SMALL_SIDES = (40, 120)
#: Share of :func:`generate_jpegs`' images that are grayscale (the others RGB).
GRAY_FRACTION = 0.3


# --------------------------------------------------------------------------- models


def bench_params(
    image_size: int | None = None, channels: int | None = None, path: Path = REPO / "params.yaml"
) -> Params:
    """The repo's params.yaml, validated, with ``data.image_size`` and ``data.channels``
    replaced where given (and the whole validated again: a size too small for the model's
    pools fails).

    Raises:
        ParamsError: one line, naming the key.
    """
    params = load_params(path)
    changes = {key: value for key, value in (("image_size", image_size), ("channels", channels))
               if value is not None}  # fmt: skip
    if not changes:
        return params
    raw = dataclasses.asdict(params)
    raw["data"].update(changes)
    given = ", ".join(f"data.{key}={value}" for key, value in changes.items())
    return parse_params(raw, source=f"{path} with {given}")


def encoder(params: Params, seed: int = 0) -> Encoder:
    """The conv stack with ``model``'s widths and dropout: the random init drawn from ``seed``."""
    m = params.model
    return seeded_encoder(params.data.channels, m.channels, m.dropout, seed)


def classifier(params: Params, seed: int = 0, num_classes: int = CLASSES) -> Classifier:
    """The fine-tuned CNN (``model`` section) for ``data``'s images, drawn from ``seed``."""
    data, m = params.data, params.model
    torch.manual_seed(seed)
    return build_classifier(data.channels, data.image_size, num_classes, m.channels, m.dropout,
                            m.hidden, m.head_dropout)  # fmt: skip


def autoencoder(params: Params, seed: int = 0) -> AutoEncoder:
    """The autoencoder stage's model: :func:`encoder` and its mirrored decoder."""
    return build_autoencoder(encoder(params, seed), params.model.channels)


def simclr(params: Params, seed: int = 0) -> SimCLR:
    """The SimCLR stage's model: encoder (dropout off) and projection head of ``simclr``."""
    data = params.data
    return build_simclr(data.channels, data.image_size, params.model.channels,
                        params.simclr.projection_dim, seed)  # fmt: skip


# --------------------------------------------------------------------------- images


def gratings(
    n: int, seed: int, image_size: int, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images ``(n, channels, image_size, image_size)`` of :data:`CLASSES`
    classes, and their int64 labels ``(n,)``.

    A class is an oriented grating at its own angle and frequency (in cycles per pixel,
    so the same at every size), randomly shifted, plus noise; the channels are equal.
    Easy enough that the probes' accuracies mean something.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    y, x = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    angle = labels * np.pi / CLASSES
    freq = 0.25 + 0.05 * (labels % 3)
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(
        freq[:, None, None] * (np.cos(angle)[:, None, None] * x + np.sin(angle)[:, None, None] * y)
        + phase[:, None, None]
    )
    images = 128 + 80 * wave + rng.normal(0, 30, wave.shape)
    images = np.clip(images, 0, 255).astype(np.uint8)[:, None]  # (n, 1, H, W)
    images = np.repeat(images, channels, axis=1)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 ``(C, H, W)`` with ``C`` 1 or 3 -> a PIL image in mode L or RGB."""
    pixels = image.numpy().transpose(1, 2, 0)
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def write_image_folder(folder: Path, n: int, seed: int, image_size: int, channels: int) -> None:
    """Write ``n`` :func:`gratings` as ``folder/class_<label>/img_<i>.png``: a labelled
    image folder like the ones ``stages.ingest`` reads (about ``n / 10`` a class)."""
    images, labels = gratings(n, seed, image_size, channels)
    for k in range(CLASSES):
        (folder / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        to_pil(image).save(folder / f"class_{label}" / f"img_{i:06d}.png")


_NOISE: dict[int, np.ndarray] = {}


def _noise_tile(seed: int) -> np.ndarray:
    """int16 ``(1024, 1024)`` texture in -16..16 (film grain), made once per generating process."""
    if seed not in _NOISE:
        rng = np.random.default_rng(seed)
        _NOISE[seed] = rng.integers(-16, 17, (1024, 1024), dtype=np.int16)
    return _NOISE[seed]


def _write_jpeg(job: tuple[str, int, int, int, int]) -> None:
    """Write image ``index``: smooth colour blobs plus texture, gray or RGB, random size."""
    path, index, seed, min_side, max_side = job
    rng = np.random.default_rng((seed, index))
    width, height = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
    gray = rng.random() < GRAY_FRACTION
    blobs = rng.integers(0, 256, (4, 4) if gray else (4, 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(blobs).resize((width, height), Image.Resampling.BILINEAR))
    y, x = (int(v) for v in rng.integers(0, 1024 - max_side, 2))
    texture = _noise_tile(seed)[y : y + height, x : x + width]
    if not gray:
        texture = texture[:, :, None]
    pixels = np.clip(base.astype(np.int16) + texture, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=85)


def generate_jpegs(
    folder: Path, n: int, sides: tuple[int, int] = MIXED_SIDES, seed: int = 0, workers: int = 2
) -> list[Path]:
    """Write ``n`` JPEGs as ``folder/class_<k>/img_<i>.jpg`` (image ``i`` in class ``i % 10``).

    Sides are drawn uniformly from ``sides`` (inclusive), 30% grayscale, the rest RGB;
    quality 85. Smooth colour blobs plus per-pixel grain give about 2.3 bits per pixel,
    like small web photos; the grain makes entropy decoding (which a reduced-scale
    JPEG decode cannot skip) a large share of the work. Returns the paths in index order.

    Raises:
        ValueError: ``sides`` is not ``(min, max)`` with ``1 <= min <= max < 1024``.
    """
    if not 1 <= sides[0] <= sides[1] < 1024:
        raise ValueError(f"sides must be (min, max) with 1 <= min <= max < 1024, got {sides}")
    paths = [folder / f"class_{i % CLASSES}" / f"img_{i:06d}.jpg" for i in range(n)]
    for k in range(min(n, CLASSES)):
        (folder / f"class_{k}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), i, seed, sides[0], sides[1]) for i, p in enumerate(paths)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_write_jpeg, jobs, chunksize=64):
            pass
    return paths
