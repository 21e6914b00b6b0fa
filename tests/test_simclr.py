import pytest
import torch

from initbench.data import Split
from initbench.model import Encoder, feature_side
from initbench.simclr import ProjectionHead, SimCLR, encode, knn_accuracy, train_simclr
from initbench.train import Normalize, set_seed

CHANNELS, DROPOUT = [4, 8, 8], [0.0, 0.0, 0.0]
CPU = torch.device("cpu")


def _split(n=40, seed=0):
    """Two classes: horizontal vs vertical bars, at random positions."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    offsets = torch.randint(0, 12, (n,), generator=generator).tolist()
    for i, offset in enumerate(offsets):
        if labels[i] == 0:
            images[i, 0, offset : offset + 4, :] = 255
        else:
            images[i, 0, :, offset : offset + 4] = 255
    return Split(images, labels)


def _model(projection_dim=8):
    encoder = Encoder(1, CHANNELS, DROPOUT)
    features = encoder.out_channels * feature_side(16, 3) ** 2
    return SimCLR(encoder, ProjectionHead(features, 16, projection_dim))


def test_projection_head_output_and_representation_shapes():
    model = _model(projection_dim=5)
    x = torch.randn(3, 1, 16, 16)
    assert model(x).shape == (3, 5)
    assert model.encoder(x).shape == (3, 8, 2, 2)  # what transfers: before the head


def test_knn_probe_separates_an_easy_problem_and_uses_cosine():
    train, val = _split(), _split(20, seed=1)
    set_seed(0)
    encoder = _model().encoder
    accuracy = knn_accuracy(encoder, Normalize([0.2], [0.4]), train, val, CPU)
    features = encode(encoder, Normalize([0.2], [0.4]), train, CPU)
    assert features.shape == (40, 8 * 2 * 2)
    assert 0.0 <= accuracy <= 1.0
    # Identical train and val: each val sample is its own nearest neighbour, but k=20
    # neighbours vote, so a label-shuffled train set must score near chance instead.
    shuffled = Split(
        train.images, train.labels[torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    )
    assert knn_accuracy(encoder, Normalize([0.2], [0.4]), shuffled, train, CPU) < 0.9


def test_train_simclr_is_seeded_and_reports_history():
    def train(seed):
        set_seed(seed)
        model = _model()
        result = train_simclr(
            model, Normalize([0.2], [0.4]), _split(), _split(20, seed=1), epochs=2, lr=0.01,
            batch_size=16, temperature=0.5, seed=seed, device=CPU, log=lambda line: None,
        )  # fmt: skip
        return model, result

    model, result = train(0)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert result.loss == result.history[-1]["loss"] and result.loss > 0
    assert 0 <= result.random_init_knn_accuracy <= 1 and result.pairs_per_s > 0
    model_again, again = train(0)
    assert again.history == result.history
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, model_again.state_dict()[key]), key
    _, other = train(1)
    assert other.history != result.history


def test_random_init_knn_is_measured_before_training():
    set_seed(0)
    model = _model()
    normalize = Normalize([0.2], [0.4])
    before = knn_accuracy(model.encoder, normalize, _split(), _split(20, seed=1), CPU)
    set_seed(0)
    result = train_simclr(_model(), normalize, _split(), _split(20, seed=1), epochs=1, lr=0.01,
                          batch_size=16, temperature=0.5, seed=0, device=CPU,
                          log=lambda line: None)  # fmt: skip
    assert result.random_init_knn_accuracy == pytest.approx(before)
