#!/usr/bin/env bash
# The GPU check, in one short run (about 5 minutes) on a machine with CUDA and PyTorch:
#   0. the CUDA tests of tests/test_train.py, when pytest is installed;
#   1. the throughput of each model and `benchmarks/bench.py` on the GPU;
#   2. a one-epoch pass of every pipeline stage for one seed (the commands of dvc.yaml,
#      run in order in a scratch copy, with `dvc repro` itself when dvc is installed),
#      on the embedded dataset when `animal-mnist` is installed, else on generated images.
# Figures go to stdout and to $OUT (default: a temp folder): bench_gpu.md, stages.txt.
#
#   bash benchmarks/gpu_check.sh                 # DEVICE=cuda
#   DEVICE=cpu bash benchmarks/gpu_check.sh      # the same on CPU, to try the script
set -euo pipefail
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1

echo "== machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== CUDA tests (mixed precision, data kept on the GPU, pinned batches)"
if $PY -c "import pytest" 2>/dev/null; then
    $PY -m pytest -q -p no:cacheprovider "$REPO/tests/test_train.py" -k "cuda or autocast" \
        || echo "CUDA tests FAILED"
fi

echo "== throughput"
$PY "$REPO/benchmarks/throughput.py" --device "$DEVICE" --steps 20
echo "== bench (side by side)"
$PY "$REPO/benchmarks/bench.py" --device "$DEVICE" --only finetune simclr probes --rounds 3 \
    --out "$OUT/bench_gpu.md"

echo "== one-epoch stages"
work=$(mktemp -d)
(cd "$REPO" && git ls-files -z | xargs -0 tar -cf - --) | tar -xf - -C "$work"
cd "$work"
rm -rf data artifacts
$PY - "$DEVICE" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

params = yaml.safe_load(Path("params.yaml").read_text())
params["device"] = sys.argv[1]
for section in ("autoencoder", "simclr", "finetune"):
    params[section]["epochs"], params[section]["min_steps"] = 1, 0
params["compare"]["seeds"], params["compare"]["label_fractions"] = [0], [0.05]
Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
try:
    from initbench.data.embedded import main as write_embedded

    if write_embedded(["data"]) != 0:
        raise RuntimeError("see the error above")
except Exception as exc:  # no animal-mnist here: 10 classes x 200 generated images
    print(f"embedded dataset unavailable ({exc}); generated images instead")
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = Path("data") / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(200):
            image = np.clip(rng.normal(40 + 20 * c, 30, (32, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i}.png")
EOF
run() {
    local start=$SECONDS
    echo "+ $*"
    "$@"
    echo "$* : $((SECONDS - start)) s" >>"$OUT/stages.txt"
}
if $PY -c "import dvc" 2>/dev/null; then
    git init -q && dvc init -q --no-scm 2>/dev/null || true
    run $PY -m dvc repro
else
    D=artifacts/dataset
    run $PY -m stages.ingest --data data --out $D --report $D/ingest.json
    run $PY -m stages.init_random --dataset $D --seed 0 --out artifacts/init/random/seed0.pt
    run $PY -m stages.patches --dataset $D --seed 0 --out artifacts/patches/seed0
    run $PY -m stages.kmeans --dataset $D --patches artifacts/patches/seed0 --seed 0 \
        --out artifacts/init/kmeans/seed0.pt --report artifacts/init/kmeans/seed0.json \
        --image artifacts/plots/kmeans_filters/seed0.png
    run $PY -m stages.autoencoder --dataset $D --seed 0 --out artifacts/init/autoencoder/seed0.pt \
        --report artifacts/init/autoencoder/seed0.json --plots metrics/plots/autoencoder/seed0 \
        --image artifacts/plots/autoencoder_reconstructions/seed0.png
    run $PY -m stages.simclr --dataset $D --seed 0 --out artifacts/init/simclr/seed0.pt \
        --report artifacts/init/simclr/seed0.json --plots metrics/plots/simclr/seed0
    run $PY -m stages.finetune --dataset $D --init artifacts/init/random/seed0.pt \
        --model artifacts/model.pt --metrics metrics/finetune.json --plots metrics/plots/finetune
    for init in random autoencoder simclr kmeans; do
        run $PY -m stages.compare_run --protocol finetune --dataset $D \
            --init artifacts/init/$init/seed0.pt --seed 0 --label-fractions 0.05 \
            --out artifacts/compare/finetune/$init/seed0-labels0.05.json
        run $PY -m stages.compare_run --protocol linear_probe --dataset $D \
            --init artifacts/init/$init/seed0.pt --seed 0 \
            --out artifacts/compare/linear_probe/$init/seed0.json
    done
fi
echo "== stage wall times"
cat "$OUT/stages.txt"
cat metrics/finetune.json
echo "figures in $OUT"
