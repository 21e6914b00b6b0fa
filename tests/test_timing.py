"""reports/timing.md: each stage's wall time, recorded beside the outputs, never in them."""

import json

import pytest

from initbench.core.cli import run
from initbench.core.timing import read_records, record_stage, render_timing, timing_page

PARAMS = """compare:
  inits: [random, autoencoder, simclr, kmeans]
  seeds: [0, 1]
  finetune_seeds: [0]
"""


def _record(stage, seconds, finished="2026-01-01T00:00:00Z"):
    return {"stage": stage, "seconds": seconds, "finished": finished, "machine": "cpu, 2 cores"}


def _row(page, start):
    return next(line for line in page.splitlines() if line.startswith(start))


def test_outside_dvc_nothing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert record_stage(3.0, {}) is None
    assert record_stage(3.0, {"DVC_STAGE": "ingest"}) is None  # no DVC_ROOT
    assert not (tmp_path / "artifacts").exists()


def test_a_stage_run_by_dvc_records_its_time_and_renders_the_page(tmp_path):
    (tmp_path / "params.yaml").write_text(PARAMS)
    env = {"DVC_STAGE": "simclr@1", "DVC_ROOT": str(tmp_path)}
    path = record_stage(12.345, env)
    assert path == tmp_path / "artifacts" / "timing" / "simclr@1.json"
    record = json.loads(path.read_text())
    assert record["stage"] == "simclr@1" and record["seconds"] == 12.3
    page = (tmp_path / "reports" / "timing.md").read_text()
    assert _row(page, "| simclr ") == "| simclr (simclr) |  | 12.3 | 12.3 |  |"  # no report


def test_a_process_started_by_torchrun_leaves_the_record_to_its_launcher(tmp_path):
    env = {"DVC_STAGE": "finetune", "DVC_ROOT": str(tmp_path), "TORCHELASTIC_RUN_ID": "x"}
    assert record_stage(1.0, env) is None
    assert read_records(tmp_path) == {}


def test_the_page_sums_a_method_s_stages_per_seed_and_drops_seeds_no_longer_run(tmp_path):
    records = {r["stage"]: r for r in [
        _record("patches@0", 2.0), _record("kmeans@0", 3.5), _record("kmeans@1", 4.0),
        _record("autoencoder@0", 30.0), _record("autoencoder@1", 34.0),
        _record("autoencoder@7", 99.0),  # a seed params.yaml no longer names
        _record("simclr@0", 10.0),
        _record("compare_run@random-0-0", 40.0), _record("compare_run@simclr-1-0", 45.5),
        _record("compare_run@simclr-7-0", 99.0),
        _record("pictures@7", 99.0), _record("finetune_budget@0-3", 99.0),
        _record("finetune_budget@1-0", 6.0),
        _record("ingest", 20.0, "2026-01-01T00:00:00Z"),
        _record("compare", 5.0, "2026-01-01T01:00:00Z"),
    ]}  # fmt: skip
    for method, seed, images in (("autoencoder", 0, 6400), ("autoencoder", 1, 6400),
                                 ("simclr", 0, 1000), ("simclr", 1, 1000)):  # fmt: skip
        path = tmp_path / "artifacts" / "init" / method / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images_seen": images}))
    page = timing_page(records, [0, 1], ["random", "autoencoder", "simclr", "kmeans"], [0],
                       tmp_path)  # fmt: skip
    assert _row(page, "| kmeans ") == "| kmeans (patches + kmeans) | 5.5 | 4.0 | 9.5 |  |"
    # seed 1's SimCLR has a report but no record yet (it is running): seed 0's rate alone
    assert _row(page, "| simclr (") == "| simclr (simclr) | 10.0 |  | 10.0 | 100 pairs of views |"
    assert (
        _row(page, "| autoencoder (")
        == "| autoencoder (autoencoder) | 30.0 | 34.0 | 64.0 | 200 images |"
    )
    assert _row(page, "| random |") == "| random | 40.0 |  | 40.0 |"
    assert _row(page, "| simclr |") == "| simclr |  | 45.5 | 45.5 |"
    assert "99.0" not in page and "| autoencoder |" not in page  # no runs, no row
    assert "| finetune_budget@1-0 | 6.0 |" in page
    stages = [line.split(" | ")[0] for line in page.splitlines() if line.startswith("| ")]
    assert stages.index("| ingest") < stages.index("| compare")  # in the order they finished
    assert "**All stages shown: 200 s (3.3 min)**" in page
    assert "between 2026-01-01T00:00:00Z and 2026-01-01T01:00:00Z" in page


def test_fine_tune_seeds_get_columns_of_their_own(tmp_path):
    records = {"compare_run@random-0-1": _record("compare_run@random-0-1", 8.0)}
    page = timing_page(records, [0], ["random"], [0, 1], tmp_path)
    assert "| init | seed 0, ft 0 | seed 0, ft 1 | all |" in page
    assert _row(page, "| random |") == "| random |  | 8.0 | 8.0 |"


def test_a_broken_record_or_params_file_is_left_out_not_raised(tmp_path):
    folder = tmp_path / "artifacts" / "timing"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text("{not json")
    (folder / "ingest.json").write_text(json.dumps(_record("ingest", 2.0)))
    (tmp_path / "params.yaml").write_text("compare: [1, 2\n")
    page = render_timing(tmp_path).read_text()
    assert "| ingest | 2.0 |" in page and list(read_records(tmp_path)) == ["ingest"]


def test_a_stage_dvc_yaml_no_longer_names_is_left_out(tmp_path):
    folder = tmp_path / "artifacts" / "timing"
    folder.mkdir(parents=True)
    for name in ("ingest", "old_stage", "compare_run@random-0-0", "compare_run", "ingest@0"):
        (folder / f"{name}.json").write_text(json.dumps(_record(name, 2.0)))
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  ingest: {cmd: x}\n  compare_run: {matrix: {s: [0]}, cmd: y}\n"
    )
    page = render_timing(tmp_path).read_text()
    assert "| ingest |" in page and "| random | 2.0 |" in page
    # a stage now gone, a plain stage turned into a matrix, and the reverse
    assert "old_stage" not in page and "| compare_run |" not in page and "ingest@0" not in page


@pytest.mark.parametrize(("code", "recorded"), [(0, True), (None, True), (1, False)])
def test_a_stage_that_exits_through_torchrun_is_recorded_only_on_success(
    tmp_path, monkeypatch, code, recorded
):
    monkeypatch.setenv("DVC_STAGE", "finetune")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)

    def main():
        raise SystemExit(code)

    with pytest.raises(SystemExit):
        run(main)
    assert ("finetune" in read_records(tmp_path)) is recorded
