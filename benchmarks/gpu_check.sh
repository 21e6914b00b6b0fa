#!/usr/bin/env bash
# The GPU check, in one short run (about 5 minutes) on a machine with CUDA and PyTorch:
#   0. the tests named for CUDA or autocast (`pytest tests -k`), when pytest is installed;
#   1. the throughput of each model and `benchmarks/bench.py` on the GPU;
#   2. a one-epoch pass of every pipeline stage for one seed, in a scratch copy: the
#      commands of dvc.yaml, expanded for the one-epoch params.yaml and put in run order by
#      `benchmarks/stage_commands.py` (so the machine needs no DVC), on the embedded
#      dataset when `animal-mnist` is installed, else on generated images.
# Figures go to stdout and to $OUT (default: a temp folder): bench_gpu.md, stages.txt
# (each stage's wall time) and stages.tsv (the commands that ran).
#
#   bash benchmarks/gpu_check.sh                 # DEVICE=cuda
#   DEVICE=cpu bash benchmarks/gpu_check.sh      # the same on CPU, to try the script
#   PYTHON=python3 bash benchmarks/gpu_check.sh  # default: .venv/bin/python if there, else python3
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEVICE=${DEVICE:-cuda}
if [[ -z ${PYTHON:-} && -x $REPO/.venv/bin/python ]]; then
    PYTHON=$REPO/.venv/bin/python
fi
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1

echo "== machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== CUDA tests (mixed precision, data kept on the GPU, pinned batches)"
if "$PY" -c "import pytest" 2>/dev/null; then
    (cd "$REPO" && "$PY" -m pytest -q -p no:cacheprovider tests -k "cuda or autocast") \
        || echo "CUDA tests FAILED"
fi

echo "== throughput"
"$PY" "$REPO/benchmarks/throughput.py" --device "$DEVICE" --steps 20
echo "== bench (side by side)"
"$PY" "$REPO/benchmarks/bench.py" --device "$DEVICE" --only finetune simclr probes --rounds 3 \
    --out "$OUT/bench_gpu.md"

echo "== one-epoch stages"
work=$(mktemp -d)
# what a commit of this tree would hold: tracked files and untracked ones git does not ignore
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 tar -cf - --ignore-failed-read --) | tar -xf - -C "$work"
cd "$work"
rm -rf data artifacts
"$PY" - "$DEVICE" "$REPO" <<'EOF'
import sys
from pathlib import Path

import yaml

device, repo = sys.argv[1], Path(sys.argv[2])
params = yaml.safe_load(Path("params.yaml").read_text())
params["device"] = device
for section in ("autoencoder", "simclr", "finetune"):
    params[section]["epochs"], params[section]["min_steps"] = 1, 0
params["compare"]["seeds"], params["compare"]["label_fractions"] = [0], [0.05]
Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
try:
    from initbench.data.embedded import main as write_embedded

    if write_embedded(["data"]) != 0:
        raise RuntimeError("see the error above")
except (ImportError, RuntimeError) as exc:  # no animal-mnist here: generated images
    print(f"embedded dataset unavailable ({exc}); generated images instead")
    sys.path.insert(0, str(repo / "benchmarks"))
    from common import write_image_folder

    data = params["data"]
    write_image_folder(Path("data"), 2000, seed=0, image_size=data["image_size"],
                       channels=data["channels"])
EOF
"$PY" "$REPO/benchmarks/stage_commands.py" >"$OUT/stages.tsv"
: >"$OUT/stages.txt"
# fd 3, not stdin: a stage that reads stdin must not eat the list
while IFS=$'\t' read -r -u 3 name command; do
    start=$SECONDS
    echo "+ $name: $command"
    bash -c "$command"
    echo "$name: $((SECONDS - start)) s" >>"$OUT/stages.txt"
done 3<"$OUT/stages.tsv"
echo "== stage wall times"
cat "$OUT/stages.txt"
cat metrics/finetune.json
echo "figures in $OUT; the one-epoch project in $work"
