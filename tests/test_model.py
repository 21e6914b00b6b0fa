import pytest
import torch

from initbench.models.cnn import Classifier, Encoder, build_classifier, feature_side

ARCH = {"channels": [16, 32, 64], "dropout": [0.3, 0.4, 0.4], "hidden": 128, "head_dropout": 0.5}


@pytest.mark.parametrize(("in_channels", "image_size", "classes"), [(1, 32, 10), (3, 28, 4)])
def test_classifier_shapes(in_channels, image_size, classes):
    model = build_classifier(in_channels, image_size, classes, **ARCH)
    x = torch.randn(5, in_channels, image_size, image_size)
    features = model.encoder(x)
    side = feature_side(image_size, 3)
    assert features.shape == (5, 64, side, side)
    assert model(x).shape == (5, classes)


def test_encoder_and_head_are_separate_modules():
    model = build_classifier(1, 32, 10, **ARCH)
    assert isinstance(model, Classifier)
    keys = list(model.state_dict())
    assert all(k.startswith(("encoder.", "head.")) for k in keys)
    bare = Encoder(1, ARCH["channels"], ARCH["dropout"])
    assert list(bare.state_dict()) == [k.removeprefix("encoder.") for k in keys if "encoder." in k]


def test_block_layout_matches_lab_report():
    encoder = Encoder(3, [16, 32, 64], [0.3, 0.4, 0.4])
    block = encoder.blocks[1]
    assert block.conv.kernel_size == (3, 3) and block.conv.padding == (1, 1)
    assert block.conv.in_channels == 16 and block.conv.out_channels == 32
    assert block.act.negative_slope == pytest.approx(0.1)
    assert block.pool.kernel_size == 2
    assert [b.dropout.p for b in encoder.blocks] == [0.3, 0.4, 0.4]


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="too small"):
        build_classifier(1, 4, 10, **ARCH)


def test_model_weights_and_activations_are_channels_last():
    # The memory layout that makes CPU max-pool fast; a plain NCHW weight would undo it.
    model = build_classifier(1, 16, 3, [4, 8], [0.1, 0.1], 8, 0.1)
    for name, parameter in model.named_parameters():
        if parameter.dim() == 4:
            assert parameter.is_contiguous(memory_format=torch.channels_last), name
    features = model.encoder(torch.rand(2, 1, 16, 16))
    assert features.is_contiguous(memory_format=torch.channels_last)
