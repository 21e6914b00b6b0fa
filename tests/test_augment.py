import pytest
import torch

from initbench.inits.augment import AugmentConfig, simclr_view

PLAIN = AugmentConfig(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, color_jitter_p=0.0, grayscale_p=0.0
)


def images(b: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_range(channels):
    x = images(c=channels, h=8, w=6)
    config = AugmentConfig(color_jitter_strength=1.0)
    for seed in range(5):
        view = simclr_view(x, gen(seed), config)
        assert view.shape == x.shape and view.dtype == x.dtype
        assert view.min() >= 0.0 and view.max() <= 1.0


@pytest.mark.parametrize("channels", [1, 3])
def test_same_seed_same_views_other_seed_other_views(channels):
    x = images(c=channels)
    assert torch.equal(simclr_view(x, gen(3)), simclr_view(x, gen(3)))
    assert not torch.equal(simclr_view(x, gen(3)), simclr_view(x, gen(4)))


def test_each_image_gets_its_own_parameters():
    x = images(b=1).expand(6, -1, -1, -1).contiguous()
    view = simclr_view(x, gen())
    assert any(not torch.equal(view[0], view[i]) for i in range(1, 6))
    assert len({tuple(v.flatten().tolist()) for v in view}) > 1


def test_crop_really_crops():
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, :4, :4], x[:, :, 4:, 4:] = 1.0, 0.5  # quadrants 1, 0 / 0, 0.5
    config = AugmentConfig(crop_scale=(0.25, 0.25), flip_p=0.0, color_jitter_p=0.0)
    view = simclr_view(x, gen(), config)
    for i in range(4):
        assert not torch.allclose(view[i], x[i], atol=1e-3)


def test_flip_always_is_a_horizontal_flip():
    x = images(c=3, h=7, w=7)
    config = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0,
                           color_jitter_p=0.0, grayscale_p=0.0)  # fmt: skip
    assert torch.allclose(simclr_view(x, gen(), config), x.flip(-1), atol=1e-5)


def test_grayscale_always_gives_equal_channels():
    config = AugmentConfig(grayscale_p=1.0)
    view = simclr_view(images(), gen(), config)
    assert torch.equal(view[:, 0], view[:, 1]) and torch.equal(view[:, 1], view[:, 2])


@pytest.mark.parametrize("channels", [1, 3])
def test_everything_off_is_the_identity(channels):
    x = images(c=channels, h=9, w=9)
    assert torch.allclose(simclr_view(x, gen(), PLAIN), x, atol=1e-5)


def test_full_crop_of_a_non_square_image_needs_its_own_ratio():
    # crop_ratio is crop width / height in pixels, as in torchvision
    x = images(h=6, w=9)
    config = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.5), flip_p=0.0,
                           color_jitter_p=0.0, grayscale_p=0.0)  # fmt: skip
    assert torch.allclose(simclr_view(x, gen(), config), x, atol=1e-5)
    assert not torch.allclose(simclr_view(x, gen(), PLAIN), x, atol=1e-3)


def test_jitter_alone_changes_colours_but_keeps_geometry():
    x = torch.full((3, 3, 4, 4), 0.5)
    x[:, 0, :2], x[:, 1, 2:] = 0.9, 0.1
    config = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0,
                           color_jitter_p=1.0, grayscale_p=0.0)  # fmt: skip
    view = simclr_view(x, gen(), config)
    assert not torch.allclose(view, x, atol=1e-3)
    # constant regions of the input stay constant
    assert torch.allclose(view[:, :, 0, 0], view[:, :, 1, 1], atol=1e-6)


def test_global_rng_is_not_consumed():
    state = torch.get_rng_state()
    simclr_view(images(), gen())
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_images_and_generator_are_refused():
    with pytest.raises(ValueError, match="C 1 or 3"):
        simclr_view(torch.rand(2, 2, 4, 4), gen())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        simclr_view(torch.rand(3, 4, 4), gen())
    with pytest.raises(ValueError, match="float"):
        simclr_view(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), gen())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.5, 0.2)),
        ("crop_scale", (0.2, 1.5)),
        ("crop_scale", (0.2,)),
        ("crop_ratio", (0.0, 1.0)),
        ("crop_ratio", (2.0, 1.0)),
        ("flip_p", 1.5),
        ("color_jitter_p", -0.1),
        ("grayscale_p", float("nan")),
        ("color_jitter_strength", -1.0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})
