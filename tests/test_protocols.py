import copy
import hashlib

import numpy as np
import pytest
import torch

from initbench.comparison.grid import run_label, run_seed
from initbench.comparison.protocols import (
    check_label_fractions,
    classifier_from_init,
    finetune,
    labelled_train,
    probe,
    result_rows,
)
from initbench.core.errors import ParamsError
from initbench.data.dataset import ArrayData, Split
from initbench.data.split import label_subset
from initbench.data.transforms import Normalize
from initbench.models.cnn import Classifier, Encoder, seeded_encoder
from initbench.models.transfer import encoder_meta, make_checkpoint
from initbench.params import FinetuneParams, LinearProbeParams, ModelParams
from initbench.training.loop import step_budget
from initbench.training.probes import encode, linear_probe, recalibrate_batchnorm
from initbench.training.supervised import evaluate

CPU = torch.device("cpu")
MODEL = ModelParams(channels=[4, 8, 8], dropout=[0.3, 0.4, 0.4], hidden=16, head_dropout=0.5)
#: Without dropout the tiny model learns the toy task in tens of steps.
QUICK_MODEL = ModelParams(channels=[4, 8, 8], dropout=[0.0] * 3, hidden=16, head_dropout=0.0)
CLASSES = 4
SIZE = 8


def _split(n, seed):
    """Class ``c`` is brightness ``c * 60 + 10`` plus noise: separable, and every image
    distinct (so an image identifies itself)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    base = (labels * 60 + 10).view(n, 1, 1, 1)
    noise = torch.randint(0, 40, (n, 1, SIZE, SIZE), generator=generator)
    return Split((base + noise).to(torch.uint8), labels)


def _data(n_train=80):
    splits = {"train": _split(n_train, 0), "val": _split(12, 1), "test": _split(12, 2)}
    return ArrayData(classes=[f"c{i}" for i in range(CLASSES)], image_size=SIZE, channels=1,
                     mean=[0.4], std=[0.3], splits=splits)  # fmt: skip


def _checkpoint(tmp_path, seed):
    encoder = seeded_encoder(1, MODEL.channels, MODEL.dropout, seed)
    path = tmp_path / f"init{seed}.pt"
    torch.save(
        make_checkpoint(
            "random", encoder, encoder_meta(_data().channels, MODEL.channels, _data().image_size)
        ),
        path,
    )
    return path


def _finetune_params(**overrides):
    values = {"epochs": 3, "min_steps": 0, "lr": 0.01, "batch_size": 8, "label_fraction": 0.25,
              "freeze_encoder": False, "augment": False, "until_plateau": False,
              "max_steps": 100}  # fmt: skip
    values.update(overrides)
    return FinetuneParams(**values)


def _probe_fields(result):
    return (result.accuracy, result.macro_f1, result.iterations, result.converged,
            result.predictions.tolist())  # fmt: skip


def _rows(images):
    return {tuple(image.flatten().tolist()) for image in images}


def test_classifier_from_init_draws_the_same_head_for_every_init(tmp_path):
    init_a, init_b = _checkpoint(tmp_path, 1), _checkpoint(tmp_path, 2)
    data = _data()
    a = classifier_from_init(data, init_a, MODEL, seed=0)
    b = classifier_from_init(data, init_b, MODEL, seed=0)
    for key, tensor in a.head.state_dict().items():
        assert torch.equal(tensor, b.head.state_dict()[key]), key
    for model, path in [(a, init_a), (b, init_b)]:
        saved = torch.load(path, weights_only=True)["encoder"]
        for key, tensor in model.encoder.state_dict().items():
            assert torch.equal(tensor, saved[key]), key
    assert not torch.equal(a.encoder.blocks[0].conv.weight, b.encoder.blocks[0].conv.weight)
    other_seed = classifier_from_init(data, init_a, MODEL, seed=1)
    assert not torch.equal(other_seed.head.net[1].weight, a.head.net[1].weight)


def test_labelled_train_is_seeded_stratified_and_nested_across_fractions():
    data = _data(n_train=400)  # 100 images a class
    (small, small_keep), (large, _) = (labelled_train(data, 0.01, seed=0),
                                       labelled_train(data, 0.1, seed=0))  # fmt: skip
    assert torch.equal(data.splits["train"].labels[small_keep], small.labels)
    assert torch.bincount(small.labels).tolist() == [1] * CLASSES
    assert torch.bincount(large.labels).tolist() == [10] * CLASSES
    assert _rows(small.images) <= _rows(large.images)
    assert _rows(large.images) <= _rows(labelled_train(data, 0.5, seed=0)[0].images)
    again, _ = labelled_train(data, 0.1, seed=0)
    assert torch.equal(again.images, large.images) and torch.equal(again.labels, large.labels)
    assert _rows(labelled_train(data, 0.1, seed=1)[0].images) != _rows(large.images)
    assert len(labelled_train(data, 1.0, seed=0)[0]) == 400


def _training_inputs(monkeypatch):
    """Record every batch a :class:`Classifier` sees in train mode."""
    seen = []
    original = Classifier.forward

    def forward(self, x):
        if self.training:
            seen.append(x.detach().clone())
        return original(self, x)

    monkeypatch.setattr(Classifier, "forward", forward)
    return seen


def test_finetune_trains_only_on_the_labelled_fraction(monkeypatch, tmp_path):
    data = _data()
    seen = _training_inputs(monkeypatch)
    params = _finetune_params()
    result = finetune(data, _checkpoint(tmp_path, 1), MODEL, params, 0.25, seed=0, device=CPU,
                      log=lambda line: None)  # fmt: skip
    keep = label_subset(data.splits["train"].labels, 0.25, seed=0)
    assert result.train_images == len(keep) == 20
    assert result.steps == step_budget(20, params.batch_size, params.epochs, params.min_steps)
    assert result.history[-1]["step"] == result.steps
    normalize = Normalize(data.mean, data.std)
    subset = _rows(normalize(data.splits["train"].images[keep]))
    trained_on = _rows(torch.cat(seen))
    assert trained_on == subset  # every labelled image, and no other


def test_finetune_reports_test_metrics_of_its_final_weights(monkeypatch, tmp_path):
    # Val labels are shifted by one class: the better the fit, the worse val gets. No
    # selection on val means the final weights are kept and scored on test anyway.
    data = _data()
    val = data.splits["val"]
    data = ArrayData(**{**data.__dict__, "splits": {
        **data.splits, "val": Split(val.images, (val.labels + 1) % CLASSES)}})  # fmt: skip
    last = {}
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        last["params"] = [p.detach().clone() for g in self.param_groups for p in g["params"]]
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    result = finetune(data, _checkpoint(tmp_path, 1), QUICK_MODEL, _finetune_params(min_steps=60),
                      0.5, seed=0, device=CPU, log=lambda line: None)  # fmt: skip
    accuracies = [row["val_accuracy"] for row in result.history]
    assert max(accuracies) > accuracies[-1]  # val was best at an earlier round
    for final, after_last_step in zip(result.model.parameters(), last["params"], strict=True):
        assert torch.equal(final, after_last_step)
    normalize = Normalize(data.mean, data.std)
    test = evaluate(result.model, normalize, data.splits["test"], CPU)
    assert result.test.accuracy == test.accuracy
    assert torch.equal(result.test.predictions, test.predictions)
    assert result.test.accuracy >= 0.9  # the final weights did learn the task


def test_finetune_with_a_frozen_encoder_recalibrates_batchnorm_only(tmp_path):
    data = _data()
    init = _checkpoint(tmp_path, 1)
    saved = torch.load(init, weights_only=True)["encoder"]
    result = finetune(data, init, MODEL, _finetune_params(freeze_encoder=True), 0.25, seed=0,
                      device=CPU, log=lambda line: None)  # fmt: skip
    expected = seeded_encoder(1, MODEL.channels, MODEL.dropout, 1)
    recalibrate_batchnorm(expected, Normalize(data.mean, data.std), data.splits["train"].images,
                          CPU)  # fmt: skip
    state = result.model.encoder.state_dict()
    for key, tensor in expected.state_dict().items():
        assert torch.equal(state[key], tensor), key
    bn_mean = "blocks.0.bn.running_mean"
    assert not torch.equal(state[bn_mean], saved[bn_mean])  # recalibrated, not the init's


def test_probe_uses_the_frozen_recalibrated_encoder_of_the_init(tmp_path):
    data = _data()
    init = _checkpoint(tmp_path, 1)
    params = LinearProbeParams(Cs=[1.0], cv_folds=5, max_iter=200)
    [(result, labelled)] = probe(data, init, MODEL, params, [0.25], seed=0, device=CPU)
    keep = label_subset(data.splits["train"].labels, 0.25, seed=0)
    assert labelled.tolist() == keep.tolist() and len(keep) == 20
    # By hand: the checkpoint's encoder, precise BatchNorm on all train images, features.
    encoder = Encoder(1, MODEL.channels, MODEL.dropout)
    encoder.load_state_dict(torch.load(init, weights_only=True)["encoder"])
    normalize = Normalize(data.mean, data.std)
    train, test = data.splits["train"], data.splits["test"]
    recalibrate_batchnorm(encoder, normalize, train.images, CPU)
    expected = linear_probe(
        encode(encoder, normalize, train.images[keep], CPU), train.labels[keep].numpy(),
        encode(encoder, normalize, test.images, CPU), test.labels.numpy(), Cs=[1.0], max_iter=200, seed=0,
    )  # fmt: skip
    assert _probe_fields(result) == _probe_fields(expected)
    assert result.accuracy > 0.5  # chance is 0.25
    assert result.predictions.shape == (len(test),)
    assert result.accuracy == (result.predictions == test.labels.numpy()).mean()


def test_probe_never_trains_the_encoder(monkeypatch, tmp_path):
    # Frozen features: no forward pass of the encoder is ever made with gradients on.
    seen = []
    original = Encoder.forward

    def forward(self, x):
        seen.append(torch.is_grad_enabled())
        return original(self, x)

    monkeypatch.setattr(Encoder, "forward", forward)
    probe(_data(), _checkpoint(tmp_path, 1), MODEL, LinearProbeParams(Cs=[1.0], cv_folds=5, max_iter=50),
          [0.25], seed=0, device=CPU)  # fmt: skip
    assert seen and not any(seen)


def test_finetune_pairs_runs_of_two_inits_at_one_seed(monkeypatch, tmp_path):
    # Same seed, different inits: the same labelled images in the same order.
    def batches_seen(init):
        seen = _training_inputs(monkeypatch)
        finetune(_data(), init, MODEL, _finetune_params(epochs=2), 0.25, seed=0, device=CPU,
                 log=lambda line: None)  # fmt: skip
        monkeypatch.undo()
        return [copy.deepcopy(batch) for batch in seen]

    a, b = batches_seen(_checkpoint(tmp_path, 1)), batches_seen(_checkpoint(tmp_path, 2))
    assert len(a) == len(b) > 0
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_probe_of_several_fractions_equals_one_probe_per_fraction(tmp_path):
    # Features are extracted once and shared: each fraction's result is what a probe of
    # that fraction alone gives.
    data, init = _data(), _checkpoint(tmp_path, 1)
    params = LinearProbeParams(Cs=[1.0], cv_folds=5, max_iter=200)
    together = probe(data, init, MODEL, params, [0.25, 0.5, 1.0], seed=2, device=CPU)
    alone = [probe(data, init, MODEL, params, [f], seed=2, device=CPU)[0] for f in [0.25, 0.5, 1.0]]
    assert [(_probe_fields(r), k.tolist()) for r, k in together] == [
        (_probe_fields(r), k.tolist()) for r, k in alone
    ]
    assert [len(keep) for _, keep in together] == [20, 40, 80]


@pytest.mark.parametrize("fraction", [0.25, 1.0])
def test_finetune_and_probe_count_the_same_labelled_images(tmp_path, fraction):
    data, init = _data(), _checkpoint(tmp_path, 1)
    tuned = finetune(data, init, MODEL, _finetune_params(epochs=1), fraction, seed=3,
                     device=CPU, log=lambda line: None)  # fmt: skip
    [(_, keep)] = probe(data, init, MODEL, LinearProbeParams(Cs=[1.0], cv_folds=5, max_iter=50),
                        [fraction], seed=3, device=CPU)  # fmt: skip
    assert tuned.labelled.tolist() == keep.tolist()
    assert tuned.train_images == len(keep) == len(labelled_train(data, fraction, seed=3)[0])


def _params():
    import dataclasses
    from pathlib import Path

    from initbench.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    finetune_params = dataclasses.replace(params.finetune, epochs=1, min_steps=0, batch_size=8)
    probe_params = dataclasses.replace(params.linear_probe, max_iter=50)
    return dataclasses.replace(params, model=MODEL, finetune=finetune_params,
                               linear_probe=probe_params,
                               kmeans=dataclasses.replace(params.kmeans, clusters=4))  # fmt: skip


@pytest.mark.parametrize("protocol", ["finetune", "linear_probe"])
def test_result_rows_record_the_labelled_subset_and_every_test_prediction(tmp_path, protocol):
    data = _data()
    rows = {seed_init: result_rows(protocol, data, _checkpoint(tmp_path, seed_init), _params(),
                                   [0.25], seed=5, device=CPU)[0]
            for seed_init in (1, 2)}  # fmt: skip
    a, b = rows[1], rows[2]
    keep = label_subset(data.splits["train"].labels, 0.25, seed=5)
    expected = hashlib.sha256(keep.numpy().astype("<i8").tobytes()).hexdigest()
    assert a["labelled_subset"] == b["labelled_subset"] == expected  # paired, and auditable
    assert a["per_class"] == [5] * CLASSES and a["train_images"] == 20
    test_labels = data.splits["test"].labels.numpy()
    for row in (a, b):
        predictions = np.asarray(row["test_predictions"])
        assert predictions.shape == test_labels.shape
        assert row["accuracy"] == pytest.approx((predictions == test_labels).mean(), abs=1e-6)
    other = result_rows(protocol, data, _checkpoint(tmp_path, 1), _params(), [0.25], seed=6,
                        device=CPU)[0]  # fmt: skip
    assert other["labelled_subset"] != a["labelled_subset"]


def test_check_label_fractions_rejects_two_fractions_with_one_subset_naming_both():
    data = _data(n_train=40)  # 10 a class: 1% and 4% both keep one image a class
    with pytest.raises(ParamsError, match=r"compare\.label_fractions 0\.01 and 0\.04 give the "
                                          r"identical labelled subset"):  # fmt: skip
        check_label_fractions(data, [0.01, 0.04, 0.5])
    check_label_fractions(data, [0.01, 0.5])  # distinct subsets: fine


def test_check_label_fractions_warns_when_the_floor_raises_a_fraction(capsys):
    data = _data(n_train=40)
    check_label_fractions(data, [0.01, 0.5], key="compare.label_fractions")
    err = capsys.readouterr().err
    assert err.count("warning:") == 1  # 0.5 keeps 5 of 10 a class, as asked
    assert "compare.label_fractions 0.01 keeps 4 of 40 train images (10.0%, not 1.0%)" in err
    check_label_fractions(data, [0.01], running=[], key="finetune.label_fraction")
    assert capsys.readouterr().err == ""  # only the fractions this run uses are warned of


@pytest.mark.parametrize("protocol", ["finetune", "linear_probe"])
def test_two_finetune_seeds_give_two_paired_rows_per_init(tmp_path, protocol):
    """Crossed repeats: each fine-tune seed of a checkpoint is its own run, on its own
    labelled subset, and the same subset for every init; repeat 0 is the plain seed."""
    data = _data()
    rows = {init: result_rows(protocol, data, _checkpoint(tmp_path, init), _params(), [0.25],
                              seed=5, device=CPU, finetune_seeds=[0, 1])
            for init in (1, 2)}  # fmt: skip
    for init_rows in rows.values():
        assert [r["finetune_seed"] for r in init_rows] == [0, 1]
        assert init_rows[0]["labelled_subset"] != init_rows[1]["labelled_subset"]
    for a, b in zip(rows[1], rows[2], strict=True):
        assert a["labelled_subset"] == b["labelled_subset"]
    plain = result_rows(protocol, data, _checkpoint(tmp_path, 1), _params(), [0.25], seed=5,
                        device=CPU)[0]  # fmt: skip
    assert {k: v for k, v in plain.items() if k != "history"} == {
        k: v for k, v in rows[1][0].items() if k != "history"
    }
    keep = label_subset(data.splits["train"].labels, 0.25, seed=run_seed(5, 1))
    expected = hashlib.sha256(keep.numpy().astype("<i8").tobytes()).hexdigest()
    assert rows[1][1]["labelled_subset"] == expected


def test_run_seed_keeps_repeat_zero_and_stays_apart_from_listed_seeds():
    assert [run_seed(s, 0) for s in range(5)] == list(range(5))
    drawn = {run_seed(s, f) for s in range(50) for f in range(1, 20)}
    assert len(drawn) == 50 * 19 and min(drawn) >= 2**24 and max(drawn) < 2**31
    assert run_seed(3, 2) == run_seed(3, 2) != run_seed(2, 3)
    assert run_label(3, 0) == "3" and run_label(3, 2) == "3/2"
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        run_seed(-1, 1)
