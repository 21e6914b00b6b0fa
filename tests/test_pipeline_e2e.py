"""End to end: the real dvc.yaml on a tiny dataset, in a temporary git repo."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("ant", "bee", "cow")
PER_CLASS = 30
COMPARE_INITS = ("random", "kmeans")


def _project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a commit of this tree would hold."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    skip = ("data.dvc", "dvc.lock", "metrics/", "tests/")
    return [f for f in out.splitlines() if not f.startswith(skip) and (REPO / f).is_file()]


def _default_params() -> dict:
    """params.yaml with every value as committed at HEAD. `dvc exp run -S init=kmeans` (or
    any -S) leaves its value in the working tree, and tests must not depend on what the
    workspace holds; keys only the working tree has (a new, uncommitted one) keep its value."""
    workspace = yaml.safe_load((REPO / "params.yaml").read_text())
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True,
                           text=True)  # fmt: skip
    if shown.returncode != 0:
        return workspace

    def merge(ours: dict, committed: dict) -> dict:
        return {key: merge(value, committed[key])
                if isinstance(value, dict) and isinstance(committed.get(key), dict)
                else committed.get(key, value) for key, value in ours.items()}  # fmt: skip

    return merge(workspace, yaml.safe_load(shown.stdout))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", DVC_NO_ANALYTICS="1")  # fmt: skip
    return env


def run(
    cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=_env() | (env or {}), capture_output=True,
                            text=True)  # fmt: skip
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _write_tiny_dataset(data: Path) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            # Classes overlap (a random brightness per image), so no init scores 1.0 and a
            # changed init shows in the comparison's metrics.
            offset = int(rng.integers(0, 120))
            pixels = rng.integers(0, 60, (20, 24), dtype=np.uint8) + offset + 30 * label
            Image.fromarray(pixels).save(data / name / f"{i:03d}.png")
    (data / "cow" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / ".DS_Store").write_bytes(b"\0")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for rel in _project_files():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    params = _default_params()
    params.update(init="random", seed=0, threads=0, nproc_per_node=1)
    params["data"].update(image_size=16, split_seed=0)
    params["finetune"].update(epochs=1, min_steps=4, batch_size=16, label_fraction=1.0,
                              freeze_encoder=False, max_steps=12)  # fmt: skip
    params["autoencoder"].update(epochs=1, min_steps=0, batch_size=16)
    params["simclr"].update(epochs=1, min_steps=0, batch_size=16)
    params["patches"].update(per_image=4, max_images=1000)
    params["compare"] |= {"inits": list(COMPARE_INITS), "seeds": [0, 1], "label_fractions": [0.5]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _write_tiny_dataset(root / "data")
    run(root, "git", "init", "-q")
    run(root, "dvc", "add", "-q", "data")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny project")
    log = run(root, "dvc", "repro")  # as `dvc repro > log.txt`: not a terminal
    (root.parent / "repro.log").write_text(log.stdout + log.stderr)
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "dvc repro")  # as users commit dvc.lock and metrics/
    return root


def stages_run(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([\w@.-]+)'", result.stdout))


def reset(project: Path) -> None:
    """Back to the committed workspace: params, lock, metrics and cached outputs."""
    run(project, "git", "reset", "-q", "--hard")
    run(project, "dvc", "checkout", "-q", "--force")


def _set_params(project: Path, **changes: object) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_the_test_project_takes_committed_params_not_the_workspaces(tmp_path, monkeypatch):
    # As `dvc exp run -S init=kmeans -S finetune.lr=0.01` leaves params.yaml.
    run(tmp_path, "git", "init", "-q")
    (tmp_path / "params.yaml").write_text("init: random\nfinetune:\n  lr: 0.001\n")
    run(tmp_path, "git", "add", "params.yaml")
    run(tmp_path, "git", "commit", "-qm", "defaults")
    (tmp_path / "params.yaml").write_text("init: kmeans\nfinetune:\n  lr: 0.01\n  new: 3\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _default_params() == {"init": "random", "finetune": {"lr": 0.001, "new": 3}}


def test_repro_writes_metrics_and_plots(project):
    metrics = json.loads((project / "metrics" / "finetune.json").read_text())
    assert set(metrics) == {"test_accuracy", "macro_f1", "run_info"}  # measurements only
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert metrics["run_info"][0]["threads"] >= 1  # what the bits depended on
    ingest = json.loads((project / "artifacts/dataset/ingest.json").read_text())
    assert ingest["images"] == 3 * PER_CLASS
    assert [f["path"] for f in ingest["skipped"]["files"]] == ["cow/broken.jpg"]
    assert ingest["ignored"]["hidden"] == 1
    history = json.loads((project / "metrics/plots/finetune/history.json").read_text())
    assert history[-1]["step"] >= 4  # min_steps applies
    confusion = json.loads((project / "metrics/plots/finetune/confusion.json").read_text())
    assert len(confusion) == ingest["split"]["test"]
    assert {row["actual"] for row in confusion} == set(CLASSES)
    for seed in (0, 1):  # pretraining runs once per seed of the comparison
        init = project / "artifacts/init"
        autoencoder = json.loads((init / f"autoencoder/seed{seed}.json").read_text())
        budget = {"steps", "images_seen", "plateau"}  # the compute and its plateau check
        assert set(autoencoder) == {"train_mse", "val_mse", "mean_image_val_mse", "run_info",
                                    *budget}  # fmt: skip
        simclr = json.loads((init / f"simclr/seed{seed}.json").read_text())
        assert set(simclr) == {"nt_xent", "val_knn_accuracy", "random_init_val_knn_accuracy",
                               "knn_monitor", "run_info", *budget}  # fmt: skip
        monitor = simclr["knn_monitor"]  # the initial encoder's, then each probe's
        assert monitor[0] == {"step": 0, "accuracy": simclr["random_init_val_knn_accuracy"]}
        assert monitor[-1] == {"step": simclr["steps"], "accuracy": simclr["val_knn_accuracy"]}
        assert set(simclr["plateau"]) == {"reached", "change", "noise", "points"}
        kmeans = json.loads((init / f"kmeans/seed{seed}.json").read_text())
        assert kmeans["iterations"] >= 1
        # max_images exceeds the dataset: every train image gives patches, no val or test one
        assert kmeans["patches_sampled"] == 4 * ingest["split"]["train"]
        for name in ("random", "autoencoder", "simclr", "kmeans"):
            assert (init / name / f"seed{seed}.pt").is_file(), name
        for name in ("kmeans_filters", "autoencoder_reconstructions"):
            assert (project / "artifacts/plots" / name / f"seed{seed}.png").is_file(), name


def test_a_repro_log_has_no_progress_bar_refreshes_and_each_stage_its_time(project):
    log = (project.parent / "repro.log").read_text()
    assert "\r" not in log and "it/s]" not in log and "step/s]" not in log
    assert log.count(": done in ") >= 20  # every stage's last line: its wall time
    # one compare_run variant an init and seed: 2 x 2
    assert re.search(r"comparison: \d+ variant\(s\) done in this dvc repro \(at most 4\)", log)


def test_each_stage_records_its_wall_time_on_a_page_outside_git_and_dvc(project):
    page = (project / "reports" / "timing.md").read_text()
    for row in ("| kmeans (patches + kmeans) |", "| autoencoder (autoencoder) |", "| kmeans |",
                "| finetune_budget@1-0 |", "| compare |"):  # fmt: skip
        assert row in page, row
    budget = json.loads((project / "artifacts/compare/budgets/seed1-ft0.json").read_text())
    rows = json.loads((project / "artifacts/compare/runs/kmeans/seed1-ft0.json").read_text())
    assert [b["steps"] for b in budget["budgets"]] == [r["steps"] for r in rows
                                                       if r["protocol"] == "finetune"]  # fmt: skip
    assert 4 < budget["budgets"][0]["steps"] <= 12  # grown from the floor, up to max_steps
    search = json.loads((project / "artifacts/compare/budget_search/seed1-ft0.json").read_text())
    assert search["budgets"][0]["floor"] == 4 and search["budgets"][0]["checks"]
    run(project, "git", "check-ignore", "-q", "reports/timing.md")  # fails unless ignored
    assert "timing" not in (project / "dvc.lock").read_text()


def test_repro_writes_the_comparison(project):
    summary = json.loads((project / "reports" / "compare.json").read_text())
    assert set(summary) == {"family", "cells", "labelled_subsets", "majority_class"}
    assert set(summary["cells"]) == {"finetune", "linear_probe"}
    assert summary["family"]["tests"] == 2 * (len(COMPARE_INITS) - 1)
    for protocol in summary["cells"].values():
        cells = protocol["labels_50%"]
        assert set(cells) == set(COMPARE_INITS)
        assert cells["random"]["n"] == 2 and 0 <= cells["random"]["mean"] <= 1
        kmeans = cells["kmeans"]["vs_random"]
        assert kmeans["verdict"] in {"better", "worse", "equivalent", "inconclusive"}
        assert kmeans["p"] <= kmeans["p_adjusted"] <= 1 and kmeans["se_test"] >= 0
    seeds = summary["labelled_subsets"]["labels_50%"]["seeds"]
    assert set(seeds) == {"0", "1"} and len(seeds["0"]["sha256"]) == 64
    for protocol in ("finetune", "linear_probe"):  # the metrics: one small file a cell
        cell = json.loads((project / f"metrics/compare/{protocol}_50%.json").read_text())
        assert list(cell) == [*COMPARE_INITS, "ci95"]
        assert cell["random"] == summary["cells"][protocol]["labels_50%"]["random"]["mean"]
    report = (project / "reports" / "compare.md").read_text()
    assert "| kmeans |" in report and "50% labels" in report
    assert "Holm-adjusted" in report and "| majority class (" in report
    for name in ("compare_accuracy", "compare_curves"):
        assert (project / "reports" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_and_experiments_read_at_120_columns(project):
    """`dvc metrics show` fits; `dvc exp show` shows the experiment, accuracy and `init`."""
    env = {"COLUMNS": "120"}
    shown = run(project, "dvc", "metrics", "show", env=env).stdout.splitlines()
    assert max(map(len, shown)) <= 120, "\n".join(shown)
    assert "test_accuracy" in shown[0] and "ci95" in shown[0]
    assert any(line.startswith("metrics/compare/linear_probe_50%.json") for line in shown)
    try:
        run(project, "dvc", "exp", "run", "-n", "try-kmeans", "-S", "init=kmeans")
        table = run(project, "dvc", "exp", "show", "--no-pager", env=env).stdout
        changed = run(project, "dvc", "exp", "show", "--no-pager", "--only-changed",
                      env=env).stdout  # fmt: skip
    finally:
        run(project, "dvc", "exp", "remove", "--all", check=False)
        reset(project)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 120, table
    # The first metric column, abbreviated (DVC folds columns to fit; --only-changed below is
    # the documented view).
    assert "test_" in lines[1], table
    # The experiment's row (its name may be folded away too) and its accuracy.
    (row,) = [line for line in lines if "└──" in line]
    assert re.search(r"\b0\.\d", row), table
    assert max(map(len, changed.splitlines())) <= 120, changed
    # DVC collapses all but the first param column to fit; --only-changed keeps `init`.
    header, row = changed.splitlines()[1], next(x for x in changed.splitlines() if "try-k" in x)
    assert "init" in header and "kmeans" in row.split("try-kmeans", 1)[1], changed


def test_plots_show_renders_the_comparison_charts_offline(project, tmp_path):
    run(project, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "Test accuracy against label fraction" in page
    assert "Fine-tune learning curves of every run" in page
    # Vega inlined from .dvc/plots/offline.html: nothing is fetched from the network
    assert "window.vegaEmbed=" in page.replace(" ", "")
    assert not re.search(r"<(script|link|img)\b[^>]*(src|href)=[\"']?(https?:)?//", page, re.I)


def test_make_plots_writes_a_png_of_every_plot(project, tmp_path):
    listed = json.loads(run(project, "dvc", "plots", "show", "--json").stdout)["data"]
    out = tmp_path / "png"
    run(project, sys.executable, "-m", "initbench.views.plots", "png", str(out))
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == sum(len(entries) for entries in listed.values()) >= 8
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_metrics_diff_shows_the_cells_of_the_init_whose_params_changed(project):
    try:
        _set_params(project, patches__min_std=0.0)
        ran = stages_run(run(project, "dvc", "repro"))
        assert {"kmeans@0", "compare_run@kmeans-1-0"} <= ran
        assert not any("@random" in stage for stage in ran), ran
        diff = json.loads(run(project, "dvc", "metrics", "diff", "--json").stdout)
        # (the tiny fine-tune may land on the same accuracies; the probe's cell moves)
        changed = {f"{path}:{key}" for path, keys in diff.items() for key in keys}
        assert "metrics/compare/linear_probe_50%.json:kmeans" in changed, changed
        assert not any(key.endswith(":random") for key in changed), changed  # random's did not
        # Going back to the committed value restores those stages from DVC's run cache.
        run(project, "git", "checkout", "params.yaml")
        back = run(project, "dvc", "repro")
        for stage in ("patches@0", "kmeans@1", "compare_run@kmeans-1-0", "compare_run@kmeans-0-0"):
            assert f"Stage '{stage}' is cached - skipping run" in back.stdout, stage
        assert run(project, "git", "status", "--porcelain").stdout == ""
    finally:
        reset(project)


def would_run(project: Path) -> set[str]:
    """The stages `dvc status` says changed, new ones included, without running any: only
    those whose own deps, params or command changed (it cannot know that an upstream output
    will change). `dvc repro --dry` stops at a new stage whose upstream output is missing."""
    status = json.loads(run(project, "dvc", "status", "--json").stdout)
    return {name.removeprefix("dvc.yaml:") for name in status}


def test_adding_a_seed_runs_only_the_new_variants(project):
    try:
        _set_params(project, compare__seeds=[0, 1, 2])
        new = {f"{stage}@2" for stage in ("init_random", "patches", "kmeans", "autoencoder",
                                          "pictures", "simclr")}  # fmt: skip
        new |= {f"compare_run@{init}-2-0" for init in COMPARE_INITS} | {"finetune_budget@2-0"}
        assert would_run(project) == new | {"compare"}
    finally:
        reset(project)


def test_adding_a_finetune_seed_runs_only_its_fine_tunes_and_probes(project):
    """A fine-tune repeat re-runs no pretraining and no existing run; a third one only its
    own variants again."""
    try:
        for repeats in ([0, 1], [0, 1, 2]):
            _set_params(project, compare__finetune_seeds=repeats)
            new = {f"compare_run@{init}-{seed}-{repeats[-1]}"
                   for init in COMPARE_INITS for seed in (0, 1)}  # fmt: skip
            new |= {f"finetune_budget@{seed}-{repeats[-1]}" for seed in (0, 1)}  # its budgets
            if repeats == [0, 1]:
                assert would_run(project) == new | {"compare"}
                run(project, "dvc", "repro")
                summary = json.loads((project / "reports" / "compare.json").read_text())
                subsets = summary["labelled_subsets"]["labels_50%"]["seeds"]
                assert set(subsets) == {"0", "0/1", "1", "1/1"}  # one subset a run, paired
                assert subsets["0"]["sha256"] != subsets["0/1"]["sha256"]
                assert summary["family"]["finetune_seeds"] == 2
                kmeans = summary["cells"]["finetune"]["labels_50%"]["kmeans"]
                assert kmeans["plateau"]["runs"] == 4 and kmeans["n"] == 2
                assert {"sd_pretraining", "sd_finetune"} <= set(kmeans["vs_random"])
                rows = json.loads((project / "artifacts/compare/runs/kmeans/seed0-ft1.json")
                                  .read_text())  # fmt: skip
                assert [(r["protocol"], r["seed"], r["finetune_seed"]) for r in rows] == [
                    ("finetune", 0, 1),
                    ("linear_probe", 0, 1),
                ]
            else:
                assert would_run(project) == new | {"compare"}
    finally:
        reset(project)


@pytest.mark.parametrize(
    ("edited", "allowed"),
    [
        ("initbench/comparison/report.py",
         ("compare_run@", "finetune", "compare")),
        ("initbench/views/pictures.py", ("pictures@", "compare")),
    ],
)  # fmt: skip
def test_an_edit_in_one_room_changes_only_the_stages_that_import_it(project, edited, allowed):
    """Stages depend on the library by room: a comment added under comparison/ leaves
    pretraining up to date, one under views/ every stage that trains."""
    try:
        with (project / edited).open("a") as file:
            file.write("# an edit\n")
        changed = would_run(project)
    finally:
        reset(project)
    assert changed, "the edit changed no stage"
    assert all(name.startswith(allowed) for name in changed), sorted(changed)


def test_a_budget_param_that_moves_no_budget_re_runs_no_comparison_run(project):
    """finetune.epochs=2 keeps the floor at min_steps on the tiny subsets: the budget
    searches run again, find the same steps, and no variant re-runs."""
    try:
        _set_params(project, finetune__epochs=2)
        ran = stages_run(run(project, "dvc", "repro"))
        assert {"finetune_budget@0-0", "finetune_budget@1-0"} <= ran, ran
        assert not any(stage.startswith("compare_run@") for stage in ran), ran
    finally:
        reset(project)


def test_an_edit_to_the_wall_time_page_s_code_re_runs_no_stage(project):
    try:
        with (project / "initbench/core/timing.py").open("a") as file:
            file.write("# an edit\n")
        assert would_run(project) == set()
    finally:
        reset(project)


def test_status_is_clean_and_second_repro_skips_every_stage(project):
    assert "up to date" in run(project, "dvc", "status").stdout
    again = run(project, "dvc", "repro")
    assert "Running stage" not in again.stdout, again.stdout
    assert "up to date" in run(project, "dvc", "status").stdout


#: One stage of each kind that trains (tests/test_reproducibility.py runs ingest, patches,
#: k-means and the seeded init twice at library level).
EACH_KIND = ("autoencoder@0", "pictures@0", "simclr@0", "finetune", "finetune_budget@1-0",
             "compare_run@kmeans-1-0")  # fmt: skip


def test_forced_repro_of_each_kind_of_stage_gives_identical_lock_and_outputs(project):
    lock = (project / "dvc.lock").read_text()
    metrics = {path: path.read_bytes() for path in (project / "metrics").rglob("*.json")}
    ran = stages_run(run(project, "dvc", "repro", "-f", "-s", *EACH_KIND))
    assert ran == set(EACH_KIND), ran
    assert (project / "dvc.lock").read_text() == lock
    assert {path: path.read_bytes() for path in metrics} == metrics


def test_data_folder_is_not_modified(project):
    assert "up to date" in run(project, "dvc", "status", "data.dvc").stdout
    assert (project / "data" / "cow" / "broken.jpg").exists()


def test_bad_params_fail_in_our_words_before_the_first_stage_works(project):
    """Every stage validates all of params.yaml before its work, so the first stage to
    run fails on any bad key, here a misspelled init in a run from scratch."""
    _set_params(project, init="randm")
    try:
        result = run(project, "dvc", "repro", "--force", check=False)
    finally:
        reset(project)
    assert result.returncode != 0
    assert stages_run(result) == {"ingest"}, result.stdout
    output = result.stdout + result.stderr
    assert (
        "error: params.yaml: init must be one of: random, autoencoder, simclr, kmeans"
        " (got 'randm')" in output
    )
    assert "`git checkout params.yaml && dvc repro` gets the committed results back" in output
    assert "Traceback" not in output


def test_misspelled_init_in_exp_run_gets_our_message_with_the_choices(project):
    """`dvc exp run -S init=kmean` changes no other value: check_params runs before
    finetune (whose checkpoint dep the typo names) and stops with one line."""
    try:
        result = run(project, "dvc", "exp", "run", "-S", "init=randm", check=False)
    finally:
        reset(project)
    assert result.returncode != 0
    assert stages_run(result) == {"check_params"}, result.stdout
    output = result.stdout + result.stderr
    assert (
        "error: params.yaml: init must be one of: random, autoencoder, simclr, kmeans"
        " (got 'randm')" in output
    )
    assert "No such file" not in output and "Traceback" not in output


@pytest.mark.parametrize("init", ["autoencoder", "simclr"])
def test_another_init_would_run_finetune_only(project, init):  # and its check of params
    try:
        _set_params(project, init=init)
        assert would_run(project) == {"check_params", "finetune"}
    finally:
        reset(project)


def test_exp_run_with_another_init_runs_finetune_only(project):  # and its check of params
    try:
        result = run(project, "dvc", "exp", "run", "-S", "init=kmeans")
        # (run, or restored from the run cache if an earlier test ran init=kmeans)
        restored = set(re.findall(r"Stage '([\w@.-]+)' is cached", result.stdout))
        assert stages_run(result) | restored == {"check_params", "finetune"}, result.stdout
        for stage in ("ingest", "patches@0", "kmeans@1", "autoencoder@0", "simclr@1",
                      "init_random@0", "compare_run@random-0-0", "compare"):  # fmt: skip
            assert f"Stage '{stage}' didn't change" in result.stdout, stage
        started = json.loads((project / "artifacts" / "finetune_init.json").read_text())
        assert started["init"] == "kmeans"
    finally:
        reset(project)


def test_simclr_temperature_reruns_finetune_only_when_init_is_simclr(project):
    try:
        _set_params(project, simclr__temperature=0.2)
        # simclr is not among the compared inits here, so no run of the comparison re-runs;
        # only the report, whose settings name the temperature
        assert would_run(project) == {"simclr@0", "simclr@1", "compare"}
        # With init: simclr, finetune also re-runs: its checkpoint is simclr@0's output.
        reset(project)
        _set_params(project, init="simclr")
        run(project, "dvc", "repro")
        _set_params(project, init="simclr", simclr__temperature=0.2)
        rerun = stages_run(run(project, "dvc", "repro"))
        assert rerun == {"simclr@0", "simclr@1", "finetune", "compare"}
    finally:
        reset(project)


def test_every_stage_comes_back_from_the_run_cache_without_its_lock_or_outputs(project):
    """Plot data is committed (cache: false) yet no stage loses DVC's run cache to it: with
    dvc.lock and every output gone, `dvc repro` restores each stage without running it."""
    try:
        (project / "dvc.lock").unlink()
        for folder in ("artifacts", "metrics"):
            shutil.rmtree(project / folder)
        result = run(project, "dvc", "repro")
        assert stages_run(result) <= {"compare"}, result.stdout  # its report is an uncached out
        for stage in ("ingest", "init_random@0", "patches@1", "kmeans@0", "autoencoder@1",
                      "simclr@0", "check_params", "finetune", "compare_run@kmeans-1-0",
                      "compare_run@random-0-0"):  # fmt: skip
            assert f"Stage '{stage}' is cached - skipping run" in result.stdout, stage
        assert run(project, "git", "status", "--porcelain").stdout == ""
        assert "up to date" in run(project, "dvc", "status").stdout
    finally:
        reset(project)


def test_results_and_experiments_come_to_another_machine_with_push_and_pull(project, tmp_path):
    """The comparison fanned out over machines: an experiment run on one machine travels
    through a shared Git remote and DVC remote (local folders here) to another clone, whose
    `dvc exp show` lists it and whose workspace gets its results and model."""
    git_remote, store = tmp_path / "origin.git", tmp_path / "dvc-store"
    run(tmp_path, "git", "init", "-q", "--bare", "--initial-branch=main", str(git_remote))
    try:
        run(project, "git", "remote", "add", "origin", str(git_remote))
        run(project, "dvc", "remote", "add", "--local", "-d", "store", str(store))
        run(project, "git", "push", "-q", "origin", "HEAD:refs/heads/main")
        run(project, "dvc", "push", "-q")  # the author's results, for teammates to pull
        run(project, "dvc", "exp", "run", "-n", "kmeans-run", "-S", "init=kmeans")
        metrics = json.loads((project / "metrics" / "finetune.json").read_text())
        run(project, "dvc", "exp", "push", "origin", "kmeans-run")  # Git refs and DVC cache

        other = tmp_path / "other-machine"
        run(tmp_path, "git", "clone", "-q", str(git_remote), str(other))
        run(other, "dvc", "remote", "add", "--local", "-d", "store", str(store))
        # A teammate on another machine gets the author's results without retraining: the
        # bits of trained weights depend on the CPU and thread count (README).
        run(other, "dvc", "pull", "-q")
        assert "up to date" in run(other, "dvc", "status").stdout
        assert stages_run(run(other, "dvc", "repro")) == set()
        assert run(other, "git", "status", "--porcelain").stdout == ""
        run(other, "dvc", "exp", "pull", "origin", "kmeans-run")
        assert "kmeans-run" in run(other, "dvc", "exp", "show", "--csv").stdout
        run(other, "dvc", "exp", "apply", "kmeans-run")
        assert json.loads((other / "metrics" / "finetune.json").read_text()) == metrics
        assert "init: kmeans" in (other / "params.yaml").read_text()
        run(other, "dvc", "checkout", "finetune")  # the model, from the pulled cache
        assert (other / "artifacts" / "model.pt").is_file()
    finally:
        run(project, "git", "remote", "remove", "origin", check=False)
        run(project, "dvc", "remote", "remove", "--local", "store", check=False)
        run(project, "dvc", "exp", "remove", "--all", check=False)
        reset(project)


def test_the_model_registry_gets_the_classifier_by_name(project, tmp_path):
    """dvc.yaml declares the models under `artifacts:`; a version is a Git tag."""
    run(project, "git", "tag", "-a", "classifier@v1.0.0", "-m", "Register classifier v1.0.0")
    try:
        out = tmp_path / "model.pt"
        run(tmp_path, "dvc", "artifacts", "get", str(project), "classifier", "-o", str(out))
        assert out.read_bytes() == (project / "artifacts" / "model.pt").read_bytes()
        listed = run(tmp_path, "dvc", "ls", str(project), "artifacts/init").stdout.split()
        assert {"random", "autoencoder", "simclr", "kmeans"} <= set(listed)
    finally:
        run(project, "git", "tag", "-d", "classifier@v1.0.0")


def test_exp_run_with_another_seed_reruns_and_diffs(project):
    """Last in this module: it leaves the workspace at seed=1."""
    result = run(project, "dvc", "exp", "run", "-S", "seed=1")
    assert "Running stage 'finetune'" in result.stdout
    diff = json.loads(run(project, "dvc", "metrics", "diff", "--all", "--json").stdout)
    assert set(diff["metrics/finetune.json"]) == {"test_accuracy", "macro_f1"}
    params = json.loads(run(project, "dvc", "params", "diff", "--json").stdout)
    assert params["params.yaml"]["seed"] == {"old": 0, "new": 1, "diff": 1}
