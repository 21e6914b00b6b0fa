from contextlib import nullcontext

import pytest
import torch
from torch import nn

from initbench.data.dataset import Split
from initbench.data.split import label_subset
from initbench.data.transforms import Normalize
from initbench.models.cnn import build_classifier
from initbench.training import loop as train_loop
from initbench.training import placement, precision, setup
from initbench.training.loop import MAX_ROUNDS, round_ends, step_budget
from initbench.training.setup import configure_torch, resolve_device, set_seed
from initbench.training.supervised import evaluate, fit

ARCH = {"channels": [4, 8, 8], "dropout": [0.3, 0.4, 0.4], "hidden": 16, "head_dropout": 0.5}
CPU = torch.device("cpu")
NORMALIZE = Normalize([0.5], [0.25])


def _toy_split(n=60, seed=0, classes=3, size=16):
    """Separable classes by brightness: class ``c`` is ``c * step + 20`` plus noise in 0..30."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    step = 200 // max(classes - 1, 1)
    base = (labels * step + 20).view(n, 1, 1, 1).float()
    noise = torch.randint(0, 30, (n, 1, size, size), generator=generator)
    return Split((base + noise).to(torch.uint8), labels)


def _fit(model, train, val, **overrides):
    kwargs = {"epochs": 2, "min_steps": 0, "lr": 0.01, "batch_size": 16, "seed": 0,
              "device": CPU, "log": lambda line: None}  # fmt: skip
    kwargs.update(overrides)
    return fit(model, NORMALIZE, train, val, **kwargs).history


def _train(seed, epochs=2, freeze_encoder=False):
    set_seed(seed)
    model = build_classifier(1, 16, 3, **ARCH)
    history = _fit(model, _toy_split(), _toy_split(30, seed=1), epochs=epochs, seed=seed,
                   freeze_encoder=freeze_encoder)  # fmt: skip
    return model, history


@pytest.fixture
def one_thread():
    """Run a long loop of tiny steps on one thread: at this size, intra-op threads cost more
    than they save, and many times more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _count_adam_steps(monkeypatch, after_step=None):
    """Count ``torch.optim.Adam.step`` calls; ``after_step(optimizer)`` runs after each."""
    calls = []
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if after_step is not None:
            after_step(self)
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    return calls


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_seeded_runs_are_identical():
    model_a, history_a = _train(seed=3)
    model_b, history_b = _train(seed=3)
    assert history_a == history_b
    assert _equal_states(model_a.state_dict(), model_b.state_dict())


def test_different_seeds_differ():
    model_a, _ = _train(seed=3)
    model_b, _ = _train(seed=4)
    assert not _equal_states(model_a.state_dict(), model_b.state_dict())


def test_training_learns_a_separable_toy_problem():
    model, history = _train(seed=0, epochs=8)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    result = evaluate(model, NORMALIZE, _toy_split(30, seed=1), CPU)
    assert result.accuracy >= 0.9
    # The last history row was measured on the weights the model keeps.
    assert history[-1]["val_accuracy"] == pytest.approx(result.accuracy)


def test_history_has_one_row_per_round_with_steps_and_epochs():
    _, history = _train(seed=0, epochs=3)  # 60 images, batch 16: 4 steps an epoch
    assert [row["step"] for row in history] == [4, 8, 12]
    assert [row["epoch"] for row in history] == [1.0, 2.0, 3.0]
    assert set(history[0]) == {
        "step", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"
    }  # fmt: skip


def test_frozen_encoder_is_unchanged_after_training():
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    _fit(model, _toy_split(), _toy_split(30, seed=1), freeze_encoder=True)
    # BatchNorm running statistics included: the encoder stays in eval mode.
    for key, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())


def test_step_budget_is_epochs_of_passes_but_at_least_min_steps():
    # 1% labels of a 7,000-image train split: 70 images, one batch a step.
    assert step_budget(70, 128, epochs=20, min_steps=0) == 20
    assert step_budget(70, 128, epochs=20, min_steps=500) == 500
    # The full split: ceil(7000 / 128) = 55 steps an epoch, already above min_steps.
    assert step_budget(7000, 128, epochs=20, min_steps=500) == 1100
    assert step_budget(256, 128, epochs=3, min_steps=5) == 6
    # A last batch of one image is skipped, so it is no step: 129 images make 1 step a pass.
    assert step_budget(129, 128, epochs=3, min_steps=0) == 3
    assert step_budget(130, 128, epochs=3, min_steps=0) == 6
    with pytest.raises(ValueError, match="at least one image"):
        step_budget(0, 128, epochs=1, min_steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        step_budget(10, 0, epochs=1, min_steps=0)


def test_round_ends_are_epochs_when_few_and_the_last_one_can_be_cut_short():
    assert round_ends(12, 4) == [4, 8, 12]
    assert round_ends(10, 4) == [4, 8, 10]
    assert round_ends(3, 5) == [3]
    assert round_ends(MAX_ROUNDS, 1) == list(range(1, MAX_ROUNDS + 1))


def test_round_ends_are_evenly_spaced_when_epochs_are_many():
    ends = round_ends(25 * MAX_ROUNDS, 1)  # more one-step epochs than rounds
    assert ends == [25 * r for r in range(1, MAX_ROUNDS + 1)]
    assert round_ends(100, 1, max_rounds=4) == [25, 50, 75, 100]


@pytest.mark.parametrize(
    ("steps", "per_epoch", "max_rounds"),
    [(1, 1, 20), (7, 3, 20), (21, 1, 20), (500, 1, 20), (1100, 55, 20), (1101, 55, 20),
     (997, 3, 20), (41, 2, 4), (5, 1, 1)],
)  # fmt: skip
def test_round_ends_are_few_increasing_and_end_at_the_budget(steps, per_epoch, max_rounds):
    ends = round_ends(steps, per_epoch, max_rounds)
    assert 1 <= len(ends) <= max_rounds
    assert ends[0] >= 1 and ends[-1] == steps
    assert ends == sorted(set(ends))  # strictly increasing


def test_fit_runs_min_steps_on_a_one_percent_label_subset(monkeypatch, one_thread):
    # 7 labelled images for each of 10 classes, batch 128, 20 epochs: 20 steps by epochs,
    # so min_steps decides. (8x8 images: the image size does not matter here.)
    train = _toy_split(70, classes=10, size=8)
    val = _toy_split(10, seed=1, classes=10, size=8)
    calls = _count_adam_steps(monkeypatch)
    set_seed(0)
    model = build_classifier(1, 8, 10, **ARCH)
    history = _fit(model, train, val, epochs=20, min_steps=500, batch_size=128)
    assert len(calls) == 500
    assert history[-1]["step"] == 500
    assert len(history) <= MAX_ROUNDS


def test_fit_without_min_steps_runs_its_epochs(monkeypatch):
    calls = _count_adam_steps(monkeypatch)
    set_seed(0)
    model = build_classifier(1, 8, 10, **ARCH)
    train, val = _toy_split(70, classes=10, size=8), _toy_split(10, seed=1, classes=10, size=8)
    history = _fit(model, train, val, epochs=20, min_steps=0, batch_size=128)
    assert len(calls) == 20
    assert [row["step"] for row in history] == round_ends(20, 1)


def test_fit_keeps_the_final_weights_even_when_val_was_best_earlier(monkeypatch):
    # Val holds train-like images labelled with the *next* class, so the better the model
    # learns train, the worse it scores on val: val accuracy peaks early.
    train = _toy_split(60)
    val = Split(_toy_split(30, seed=1).images, (_toy_split(30, seed=1).labels + 1) % 3)
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    snapshots = []
    _count_adam_steps(
        monkeypatch, lambda _: snapshots.append(
            {k: v.clone() for k, v in model.state_dict().items()}
        )
    )  # fmt: skip
    history = _fit(model, train, val, epochs=8)
    accuracies = [row["val_accuracy"] for row in history]
    assert max(accuracies) > accuracies[-1]  # the case this test is about
    best_round = accuracies.index(max(accuracies))
    best_state = snapshots[history[best_round]["step"] - 1]
    assert isinstance(history, list)
    assert _equal_states(model.state_dict(), snapshots[-1])
    assert not _equal_states(model.state_dict(), best_state)
    assert evaluate(model, NORMALIZE, val, CPU).accuracy == pytest.approx(accuracies[-1])


def test_fit_survives_a_last_batch_of_one_image(monkeypatch):
    # 129 = 128 + 1 images of 8x8: the third block's map is 1x1, so a batch of one image
    # would give BatchNorm a single value per channel.
    train = _toy_split(129, size=8)
    set_seed(0)
    model = build_classifier(1, 8, 3, **ARCH)
    sizes = []
    model.register_forward_pre_hook(
        lambda module, inputs: sizes.append(len(inputs[0])) if module.training else None
    )
    calls = _count_adam_steps(monkeypatch)
    history = _fit(model, train, _toy_split(9, seed=1, size=8), epochs=3, batch_size=128)
    assert len(calls) == history[-1]["step"] == step_budget(129, 128, 3, 0)
    assert min(sizes) >= 2


def test_evaluate_reports_loss_accuracy_and_macro_f1():
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    split = _toy_split(30)
    result = evaluate(model, NORMALIZE, split, CPU)
    assert result.predictions.shape == (30,)
    assert result.accuracy == pytest.approx((result.predictions == split.labels).float().mean())
    assert 0 <= result.macro_f1 <= 1 and result.loss > 0


def test_evaluate_macro_f1_is_the_mean_of_per_class_f1_not_micro():
    class AlwaysFirstClass(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([1.0, 0.0]).expand(len(x), 2)

    labels = torch.tensor([0] * 8 + [1] * 2)
    split = Split(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), labels)
    result = evaluate(AlwaysFirstClass(), NORMALIZE, split, CPU)
    assert result.accuracy == pytest.approx(0.8)  # = micro-F1 for single-label prediction
    # class 0: precision 0.8, recall 1 -> F1 8/9; class 1: F1 0; macro = 4/9
    assert result.macro_f1 == pytest.approx(4 / 9)


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


def test_resolve_device_changes_no_state():
    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    assert resolve_device("cpu").type == "cpu"
    assert (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) == before


def test_configure_torch_cpu_turns_on_deterministic_algorithms():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        configure_torch(torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def test_configure_torch_sets_the_thread_count_only_when_asked():
    before = torch.get_num_threads()
    try:
        configure_torch(torch.device("cpu"), threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        configure_torch(torch.device("cpu"))  # 0: torch's default is left alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_run_info_names_what_the_bits_depend_on(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (info,) = setup.run_info(torch.device("cpu"))
    assert info["torch"] == torch.__version__ and info["threads"] == torch.get_num_threads()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["processes"] == 1 and info["device"] == "cpu"
    assert info["env"] == {"ATEN_CPU_CAPABILITY": "default"}
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert "env" not in setup.run_info(torch.device("cpu"))[0]


def test_the_history_file_grows_round_by_round_during_training(tmp_path):
    """Live curves: the stage's history file holds every round so far, as training goes."""
    import json

    path = tmp_path / "plots" / "history.json"
    write = train_loop.live_history(path)
    on_disk = []

    def on_history(history):
        write(history)
        on_disk.append(json.loads(path.read_text()))  # what dvc plots would read now

    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    history = _fit(model, _toy_split(), _toy_split(30, seed=1), epochs=4, on_history=on_history)
    assert len(history) >= 3
    assert [len(rows) for rows in on_disk] == list(range(1, len(history) + 1))
    assert on_disk[-1] == history
    assert [p.name for p in path.parent.iterdir()] == ["history.json"]  # no temp file left


def test_cpu_trains_in_float32_and_cuda_in_bfloat16_or_float16_with_a_scaler(monkeypatch):
    cpu = precision.mixed_precision(CPU)
    assert cpu.dtype is None and cpu.scaler is None and cpu.name == "float32"
    assert setup.run_info(CPU)[0]["precision"] == "float32"
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))  # Hopper
    bf16 = precision.mixed_precision(cuda)
    assert bf16.dtype == torch.bfloat16 and bf16.scaler is None
    assert bf16.name == "bfloat16 autocast"
    # Turing (7.5): torch.cuda.is_bf16_supported() says yes (emulated), yet float16 is right
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else nullcontext():
        fp16 = precision.mixed_precision(cuda)  # the scaler warns (and disables itself) off CUDA
    assert fp16.dtype == torch.float16 and isinstance(fp16.scaler, torch.amp.GradScaler)
    assert fp16.name == "float16 autocast + grad scaler"


def test_optimize_runs_the_loss_under_autocast_and_steps_through_the_scaler():
    """The mixed-precision path that CUDA takes, run on CPU: bfloat16 autocast and a
    gradient scaler (CPU has both), so the loop's use of them is exercised here."""
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH)
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=1)
    mixed = precision.MixedPrecision(torch.bfloat16, scaler)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def loss_fn(images, labels):
        logits = model(NORMALIZE(images))
        seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
        return nn.functional.cross_entropy(logits, labels)

    rounds = []
    train_loop.optimize(torch.optim.Adam(model.parameters(), lr=0.01), _toy_split(), batch_size=16,
                   steps=6, generator=torch.Generator().manual_seed(0), loss_fn=loss_fn,
                   on_round=rounds.append, desc="amp", device=CPU, precision=mixed)  # fmt: skip
    assert seen == [(True, torch.bfloat16)] * 6
    assert scaler.get_scale() == 16.0 * 2**6  # every step went through scaler.update
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    assert not _equal_states(before, model.state_dict())
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in rounds)


def test_cpu_batches_are_neither_copied_nor_pinned():
    split = _toy_split()
    assert placement.keep_on_device(split, CPU) is split
    assert placement.to_device(split.images, CPU) is split.images


def test_data_stays_on_the_gpu_only_when_it_takes_at_most_half_the_free_memory():
    assert placement.fits_on_device(500, 1000) and not placement.fits_on_device(501, 1000)
    assert placement.fits_on_device(0, 0) and not placement.fits_on_device(1, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("on_gpu", [True, False], ids=["split-on-gpu", "pinned-batches"])
def test_cuda_trains_with_the_split_on_the_gpu_or_from_pinned_batches(monkeypatch, on_gpu):
    cuda = torch.device("cuda")
    split = _toy_split()
    if on_gpu:
        kept = placement.keep_on_device(split, cuda)
        assert kept.images.is_cuda and kept.labels.is_cuda
    else:
        monkeypatch.setattr(placement, "fits_on_device", lambda *a, **k: False)
        assert placement.keep_on_device(split, cuda) is split
        moved = placement.to_device(split.images, cuda)
        assert moved.is_cuda and torch.equal(moved.cpu(), split.images)
    set_seed(0)
    model = build_classifier(1, 16, 3, **ARCH).to(cuda)
    normalize = Normalize([0.5], [0.25]).to(cuda)
    history = fit(model, normalize, split, _toy_split(30, seed=1), epochs=4, min_steps=0,
                  lr=0.01, batch_size=16, seed=0, device=cuda, log=lambda line: None).history  # fmt: skip
    assert history[-1]["train_accuracy"] > 0.5


def test_crop_flip_is_seeded_keeps_the_shape_and_crops_within_the_padding():
    from initbench.data.transforms import crop_flip

    images = torch.arange(1, 2 * 3 * 8 * 8 + 1, dtype=torch.float32).view(2, 3, 8, 8)
    a = crop_flip(images, torch.Generator().manual_seed(4), 2)
    b = crop_flip(images, torch.Generator().manual_seed(4), 2)
    assert torch.equal(a, b) and a.shape == images.shape and a.dtype == images.dtype
    # Every view is a window of the zero-padded image, maybe mirrored: its non-zero
    # values are the image's, in rows and columns of the image.
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for view, full in zip(a, padded, strict=True):
        windows = [full[:, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(view, w) or torch.equal(view, w.flip(-1)) for w in windows)
    # The draws do not depend on the pixels: another batch of the same size gets the same
    # offsets and flips.
    c = crop_flip(images + 1, torch.Generator().manual_seed(4), 2)
    assert torch.equal(c != 0, a != 0)


def test_augmentation_gives_every_init_the_same_views_at_one_seed(monkeypatch):
    from initbench.training import supervised

    seen = []
    original = supervised.crop_flip

    def record(images, generator, padding):
        out = original(images, generator, padding)
        seen.append(out.clone())
        return out

    monkeypatch.setattr(supervised, "crop_flip", record)
    views = []
    for init_seed in (1, 2):  # two different encoders, one run seed
        set_seed(init_seed)
        seen.clear()
        _fit(build_classifier(1, 16, 3, **ARCH), _toy_split(), _toy_split(30, seed=1),
             seed=5, augment=True)  # fmt: skip
        views.append(list(seen))
    assert len(views[0]) == len(views[1]) > 0
    assert all(torch.equal(x, y) for x, y in zip(*views, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(views[0], views[0][1:], strict=False))


def test_augmentation_off_draws_nothing_and_trains_as_before(monkeypatch):
    from initbench.training import supervised

    def refuse(*args):
        raise AssertionError("crop_flip called with augment off")

    monkeypatch.setattr(supervised, "crop_flip", refuse)
    model, history = _train(3)  # augment defaults to off
    monkeypatch.undo()
    again, history_again = _train(3)
    assert history == history_again
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[key]), key
    set_seed(3)
    augmented = build_classifier(1, 16, 3, **ARCH)
    _fit(augmented, _toy_split(), _toy_split(30, seed=1), seed=3, augment=True)
    assert not torch.equal(augmented.head.net[-1].weight, model.head.net[-1].weight)
