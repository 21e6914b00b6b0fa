import copy

import pytest
import torch
from torch import nn

from initbench.data.dataset import Split
from initbench.data.transforms import Normalize
from initbench.inits.simclr import KNN_PROBES, ProjectionHead, SimCLR, probe_knn, train_simclr
from initbench.models.cnn import Encoder, feature_side
from initbench.training.loop import MAX_ROUNDS
from initbench.training.probes import encode, knn_accuracy, recalibrate_batchnorm
from initbench.training.setup import set_seed

CHANNELS, DROPOUT = [4, 8, 8], [0.0, 0.0, 0.0]
CPU = torch.device("cpu")
NORMALIZE = Normalize([0.2], [0.4])


def _split(n=40, seed=0, size=16):
    """Two classes: horizontal vs vertical bars, at random positions."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    offsets = torch.randint(0, size - 4, (n,), generator=generator).tolist()
    for i, offset in enumerate(offsets):
        if labels[i] == 0:
            images[i, 0, offset : offset + 4, :] = 255
        else:
            images[i, 0, :, offset : offset + 4] = 255
    return Split(images, labels)


def _model(projection_dim=8, size=16):
    encoder = Encoder(1, CHANNELS, DROPOUT)
    features = encoder.out_channels * feature_side(size, 3) ** 2
    return SimCLR(encoder, ProjectionHead(features, 16, projection_dim))


def _train(model, train, val, **overrides):
    kwargs = {"epochs": 2, "min_steps": 0, "lr": 0.01, "batch_size": 16, "temperature": 0.5,
              "seed": 0, "device": CPU, "log": lambda line: None}  # fmt: skip
    kwargs.update(overrides)
    return train_simclr(model, NORMALIZE, train, val, **kwargs)


def _norm_stats(encoder):
    return [(m.running_mean.clone(), m.running_var.clone())
            for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]  # fmt: skip


def test_projection_head_output_and_representation_shapes():
    model = _model(projection_dim=5)
    x = torch.randn(3, 1, 16, 16)
    assert model(x).shape == (3, 5)
    assert model.encoder(x).shape == (3, 8, 2, 2)  # what transfers: before the head


def test_knn_probe_separates_an_easy_problem_but_not_shuffled_labels():
    train = _split()
    set_seed(0)
    encoder = _model().encoder
    features = encode(encoder, NORMALIZE, train.images, CPU)
    assert features.shape == (40, 8 * 2 * 2)
    # Identical train and val: each val sample is its own nearest neighbour, but k=20
    # neighbours vote, so a label-shuffled train set must score near chance instead.
    shuffled = train.labels[torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    labels = train.labels.numpy()
    assert knn_accuracy(features, shuffled.numpy(), features, labels) < 0.9
    assert probe_knn(encoder, NORMALIZE, Split(train.images, shuffled), train, CPU) < 0.9
    assert 0.0 <= probe_knn(encoder, NORMALIZE, train, _split(20, seed=1), CPU) <= 1.0


def test_probe_knn_recalibrates_batchnorm_on_the_train_images():
    train, val = _split(), _split(20, seed=1)
    set_seed(0)
    encoder = _model().encoder
    fresh = copy.deepcopy(encoder)
    recalibrate_batchnorm(fresh, NORMALIZE, train.images, CPU)
    probe_knn(encoder, NORMALIZE, train, val, CPU)
    for (mean, var), (fresh_mean, fresh_var) in zip(
        _norm_stats(encoder), _norm_stats(fresh), strict=True
    ):
        assert torch.equal(mean, fresh_mean) and torch.equal(var, fresh_var)
        assert not torch.equal(var, torch.ones_like(var))  # not BatchNorm's defaults


def test_train_simclr_is_seeded_and_reports_history():
    def train(seed):
        set_seed(seed)
        model = _model()
        result = _train(model, _split(), _split(20, seed=1), seed=seed)
        return model, result

    model, result = train(0)
    # 40 images, batch 16: 3 steps an epoch, one round each.
    assert [row["step"] for row in result.history] == [3, 6]
    assert [row["epoch"] for row in result.history] == [1.0, 2.0]
    assert result.loss == result.history[-1]["loss"] and result.loss > 0
    assert result.knn_accuracy == result.history[-1]["knn_accuracy"]
    assert 0 <= result.random_init_knn_accuracy <= 1 and result.pairs_per_s > 0
    model_again, again = train(0)
    assert again.history == result.history
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, model_again.state_dict()[key]), key
    _, other = train(1)
    assert other.history != result.history


def test_train_simclr_runs_min_steps_and_probes_a_few_rounds_always_the_last():
    set_seed(0)
    live = []
    result = _train(_model(size=8), _split(8, size=8), _split(4, seed=1, size=8), epochs=1,
                    min_steps=3 * MAX_ROUNDS, batch_size=8,
                    on_history=lambda rows: live.append(len(rows)))  # fmt: skip
    assert live == list(range(1, MAX_ROUNDS + 1))  # live curves: after every round
    assert result.history[-1]["step"] == 3 * MAX_ROUNDS
    assert len(result.history) == MAX_ROUNDS
    # one shape for every row, as DVC plots need (None where the probe did not run)
    assert {tuple(row) for row in result.history} == {("step", "epoch", "loss", "knn_accuracy")}
    probed = [row for row in result.history if row["knn_accuracy"] is not None]
    assert 1 <= len(probed) <= KNN_PROBES
    assert result.history[-1]["knn_accuracy"] is not None


def test_random_init_knn_is_measured_before_training_with_recalibrated_batchnorm():
    train, val = _split(), _split(20, seed=1)
    set_seed(0)
    model = _model()
    initial = copy.deepcopy(model.encoder)
    raw = knn_accuracy(
        encode(initial, NORMALIZE, train.images, CPU), train.labels.numpy(),
        encode(initial, NORMALIZE, val.images, CPU), val.labels.numpy(),
    )  # fmt: skip
    recalibrated = probe_knn(initial, NORMALIZE, train, val, CPU)
    assert recalibrated != raw  # this encoder and data tell the two apart
    result = _train(model, train, val, epochs=1)
    assert result.random_init_knn_accuracy == pytest.approx(recalibrated)


def test_each_step_compares_two_different_augmentations_of_the_batch():
    set_seed(0)
    model = _model()
    inputs = []
    model.register_forward_pre_hook(
        lambda module, args: inputs.append(args[0].clone()) if module.training else None
    )
    _train(model, _split(), _split(20, seed=1), epochs=1, batch_size=40)
    assert len(inputs) == 2  # one step: view 1, then view 2 of the same 40 images
    view1, view2 = inputs
    assert view1.shape == view2.shape == (40, 1, 16, 16)
    assert not torch.allclose(view1, view2)  # two draws, not one view twice


def test_train_simclr_survives_a_last_batch_of_one_image():
    # 129 = 128 + 1 images of 8x8: the third block's map is 1x1.
    set_seed(0)
    result = _train(_model(size=8), _split(129, size=8), _split(10, seed=1, size=8), epochs=2,
                    batch_size=128)  # fmt: skip
    # one step a pass: the single-image batch is skipped, not counted
    assert result.history[-1]["step"] == 2 and result.history[-1]["epoch"] == 2.0
    assert result.loss > 0


def test_views_stay_float32_when_the_model_runs_in_mixed_precision(monkeypatch):
    """On CUDA the step runs under bfloat16 autocast; the augmentation must not (its
    sampling grid would be rounded, so a seed's views would depend on the precision)."""
    import initbench.inits.simclr as simclr_module
    from initbench.training import loop as loop_module
    from initbench.training import precision as precision_module

    monkeypatch.setattr(loop_module, "mixed_precision",
                        lambda device: precision_module.MixedPrecision(torch.bfloat16))  # fmt: skip
    seen = []
    original = simclr_module.simclr_view

    def view(images, generator, config):
        out = original(images, generator, config)
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    monkeypatch.setattr(simclr_module, "simclr_view", view)
    set_seed(0)
    model = _model()
    outputs = []
    model.head.register_forward_hook(lambda module, inputs, output: outputs.append(output.dtype))
    _train(model, _split(), _split(20, seed=1), epochs=1)
    assert seen and set(seen) == {(False, torch.float32)}
    assert set(outputs) >= {torch.bfloat16}  # the model itself did run in bfloat16


def test_a_grown_budget_ends_on_a_flat_nt_xent_with_a_last_knn_probe():
    train, val = _split(48, 0), _split(16, 1)
    result = _train(_model(), train, val, epochs=1, min_steps=20, max_steps=2000)
    assert 20 < result.steps < 2000 and (result.steps - 20) % 10 == 0
    assert result.plateau.reached
    assert result.history[-1]["step"] == result.steps
    assert result.history[-1]["knn_accuracy"] is not None  # the last round always probes
