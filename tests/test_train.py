import pytest
import torch

from initbench.data import Split, label_subset
from initbench.model import build_classifier
from initbench.train import Normalize, evaluate, fit, set_seed

ARCH = {"channels": [4, 8, 8], "dropout": [0.3, 0.4, 0.4], "hidden": 16, "head_dropout": 0.5}


def _toy_split(n=60, seed=0):
    """Three separable classes: dark, mid and bright 16x16 images with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    base = (labels * 100 + 20).view(n, 1, 1, 1).float()
    images = (base + torch.randint(0, 30, (n, 1, 16, 16), generator=generator)).to(torch.uint8)
    return Split(images, labels)


def _train(seed, epochs=2, freeze_encoder=False):
    set_seed(seed)
    model = build_classifier(1, 16, 3, **ARCH)
    normalize = Normalize([0.5], [0.25])
    history, best = fit(
        model, normalize, _toy_split(), _toy_split(30, seed=1), epochs=epochs, lr=0.01,
        batch_size=16, seed=seed, device=torch.device("cpu"), freeze_encoder=freeze_encoder,
        log=lambda line: None,
    )  # fmt: skip
    return model, history, best


def test_two_seeded_runs_are_identical():
    _, history_a, best_a = _train(seed=3)
    _, history_b, best_b = _train(seed=3)
    assert history_a == history_b
    assert best_a.keys() == best_b.keys()
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_different_seeds_differ():
    _, _, best_a = _train(seed=3)
    _, _, best_b = _train(seed=4)
    assert not all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_training_learns_a_separable_toy_problem():
    model, history, best = _train(seed=0, epochs=8)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model.load_state_dict(best)
    result = evaluate(model, Normalize([0.5], [0.25]), _toy_split(30, seed=1), torch.device("cpu"))
    assert result.accuracy >= 0.9
    assert max(h["val_accuracy"] for h in history) == pytest.approx(result.accuracy)


def test_frozen_encoder_is_unchanged_after_training():
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    fit(
        model, Normalize([0.5], [0.25]), _toy_split(), _toy_split(30, seed=1), epochs=2,
        lr=0.01, batch_size=16, seed=0, device=torch.device("cpu"), freeze_encoder=True,
        log=lambda line: None,
    )  # fmt: skip
    # BatchNorm running statistics included: the encoder stays in eval mode.
    for key, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())


def test_evaluate_reports_loss_accuracy_and_macro_f1():
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    split = _toy_split(30)
    result = evaluate(model, Normalize([0.5], [0.25]), split, torch.device("cpu"))
    assert result.predictions.shape == (30,)
    assert result.accuracy == pytest.approx((result.predictions == split.labels).float().mean())
    assert 0 <= result.macro_f1 <= 1 and result.loss > 0


def test_normalize_standardizes_per_channel():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 2, 1, 1)
    out = Normalize([0.5, 0.0], [0.5, 1.0])(images)
    assert torch.allclose(out[:, 0].flatten(), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(out[:, 1].flatten(), torch.tensor([0.0, 1.0]))


def test_label_subset_is_stratified_seeded_and_complete_at_one():
    labels = torch.arange(100) % 4
    assert torch.equal(label_subset(labels, 1.0, seed=0), torch.arange(100))
    subset = label_subset(labels, 0.2, seed=0)
    assert torch.bincount(labels[subset]).tolist() == [5, 5, 5, 5]
    assert torch.equal(subset, label_subset(labels, 0.2, seed=0))
    assert not torch.equal(subset, label_subset(labels, 0.2, seed=1))
    # at least one label per class, even for tiny fractions
    assert torch.bincount(labels[label_subset(labels, 0.001, seed=0)]).tolist() == [1, 1, 1, 1]
