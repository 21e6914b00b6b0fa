import pytest
import torch

from initbench.data.dataset import Split
from initbench.data.transforms import Normalize
from initbench.inits.autoencoder import (
    build_autoencoder,
    mean_image_loss,
    reconstruction_loss,
    train_autoencoder,
)
from initbench.models.cnn import Encoder, build_classifier
from initbench.models.transfer import load_encoder, make_checkpoint
from initbench.training.loop import step_budget
from initbench.training.setup import set_seed

CHANNELS, DROPOUT = [4, 8, 8], [0.1, 0.1, 0.1]
CPU = torch.device("cpu")


@pytest.mark.parametrize(("in_channels", "size"), [(1, 32), (3, 16), (1, 28), (3, 20)])
def test_decoder_output_shape_equals_input_shape(in_channels, size):
    model = build_autoencoder(Encoder(in_channels, CHANNELS, DROPOUT), CHANNELS)
    x = torch.randn(2, in_channels, size, size)
    out = model(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1  # sigmoid output, on the 0..1 scale


def _blobs(n=48, seed=0):
    """Smooth images that an autoencoder can learn: one bright square per image."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    corners = torch.randint(0, 10, (n, 2), generator=generator)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, 0, r : r + 6, c : c + 6] = 255
    return Split(images, torch.zeros(n, dtype=torch.int64))


def test_training_beats_the_mean_image_and_is_seeded():
    def train(seed):
        set_seed(seed)
        model = build_autoencoder(Encoder(1, CHANNELS, [0.0, 0.0, 0.0]), CHANNELS)
        normalize = Normalize([0.2], [0.4])
        result = train_autoencoder(
            model, normalize, _blobs(), _blobs(24, seed=1), epochs=12, min_steps=0, lr=0.01,
            batch_size=16, seed=seed, device=CPU, log=lambda line: None,
        )  # fmt: skip
        return model, result

    _, result = train(0)
    assert result.val_loss < mean_image_loss(_blobs(), _blobs(24, seed=1))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.val_loss == result.history[-1]["val_loss"]
    _, again = train(0)
    assert again.history == result.history


def test_reconstruction_loss_is_per_pixel_mse():
    model = build_autoencoder(Encoder(1, CHANNELS, DROPOUT), CHANNELS)
    split = _blobs(8)
    normalize = Normalize([0.2], [0.4])
    model.eval()
    with torch.no_grad():
        expected = torch.mean((model(normalize(split.images)) - split.images / 255.0) ** 2)
    assert reconstruction_loss(model, normalize, split, CPU) == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_mean_image_loss_is_zero_for_constant_images_and_positive_otherwise():
    flat = Split(torch.full((4, 1, 4, 4), 7, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    assert mean_image_loss(flat, flat) == 0
    assert mean_image_loss(_blobs(8), _blobs(8, seed=3)) > 0


def test_encoder_transfer_includes_batchnorm_statistics():
    set_seed(0)
    model = build_autoencoder(Encoder(1, CHANNELS, DROPOUT), CHANNELS)
    train_autoencoder(model, Normalize([0.2], [0.4]), _blobs(), _blobs(8), epochs=1, min_steps=0,
                      lr=0.01, batch_size=16, seed=0, device=CPU, log=lambda line: None)  # fmt: skip
    running_mean = model.encoder.blocks[0].bn.running_mean
    assert not torch.equal(running_mean, torch.zeros_like(running_mean))  # it moved in training
    checkpoint = make_checkpoint("autoencoder", model.encoder,
                                 {"in_channels": 1, "channels": CHANNELS, "image_size": 16})  # fmt: skip
    classifier = build_classifier(1, 16, 3, CHANNELS, DROPOUT, 8, 0.5)
    load_encoder(classifier, checkpoint, "autoencoder.pt")
    assert torch.equal(classifier.encoder.blocks[0].bn.running_mean, running_mean)


def test_training_runs_min_steps_when_epochs_give_fewer():
    set_seed(0)
    model = build_autoencoder(Encoder(1, CHANNELS, DROPOUT), CHANNELS)
    live = []
    result = train_autoencoder(model, Normalize([0.2], [0.4]), _blobs(), _blobs(8), epochs=1,
                               min_steps=7, lr=0.01, batch_size=16, seed=0, device=CPU,
                               log=lambda line: None,
                               on_history=lambda rows: live.append(list(rows)))  # fmt: skip
    # 48 images, batch 16: one epoch is 3 steps, so min_steps decides.
    assert [row["step"] for row in result.history] == [3, 6, 7]
    assert live == [result.history[:1], result.history[:2], result.history]  # live curves
    assert result.history[-1]["epoch"] == pytest.approx(7 / 3, abs=1e-4)


def test_a_last_batch_of_one_image_does_not_crash_training():
    # 129 = 128 + 1 images of 8x8: the encoder's third block, and the decoder's first,
    # see 1x1 maps, where BatchNorm cannot normalize a single image in train mode.
    set_seed(0)
    model = build_autoencoder(Encoder(1, CHANNELS, DROPOUT), CHANNELS)
    blobs = _blobs(129)
    train = Split(blobs.images[..., ::2, ::2].contiguous(), blobs.labels)
    sizes = []
    model.register_forward_pre_hook(
        lambda module, inputs: sizes.append(len(inputs[0])) if module.training else None
    )
    result = train_autoencoder(model, Normalize([0.2], [0.4]), train, Split(train.images[:8],
                               train.labels[:8]), epochs=2, min_steps=0, lr=0.01,
                               batch_size=128, seed=0, device=CPU, log=lambda line: None)  # fmt: skip
    assert result.history[-1]["step"] == step_budget(129, 128, 2, 0)
    assert min(sizes) >= 2 and result.train_loss > 0


def test_a_grown_budget_stops_when_the_mse_is_flat_and_equals_that_fixed_budget():
    """With ``max_steps`` the budget grows from the floor until two plateau checks in a row
    pass; the run it stops is the plain run of that many steps, weights and all."""

    def train(**budget):
        set_seed(0)
        model = build_autoencoder(Encoder(1, CHANNELS, [0.0, 0.0, 0.0]), CHANNELS)
        result = train_autoencoder(model, Normalize([0.2], [0.4]), _blobs(), _blobs(8),
                                   epochs=1, lr=0.01, batch_size=16, seed=0, device=CPU,
                                   log=lambda line: None, **budget)  # fmt: skip
        return model, result

    _, floor = train(min_steps=30)
    assert floor.steps == 30
    grown_model, grown = train(min_steps=30, max_steps=3000)
    assert 30 < grown.steps < 3000 and (grown.steps - 30) % 15 == 0
    assert grown.plateau.reached and grown.images_seen == grown.steps * 16
    fixed_model, fixed = train(min_steps=grown.steps)
    last = ("step", "val_loss")  # (train_loss is the round's mean, and rounds differ)
    assert [fixed.history[-1][k] for k in last] == [grown.history[-1][k] for k in last]
    for a, b in zip(fixed_model.state_dict().values(), grown_model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    _, capped = train(min_steps=30, max_steps=35)
    assert capped.steps == 35
