"""What is byte-for-byte reproducible on another machine, and what is not (README,
"Reproducing results on another machine").

A second x86-64 machine is stood in for by capping the instruction sets that ATen, oneDNN,
MKL and OpenBLAS dispatch to and by changing the thread count: each of these changes the
last bits of some float results today. Ingest, the whitened patches and the k-means
filters must not change; trained weights do, and their metrics record why.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Each variable caps what one library dispatches to, as an older or different CPU would.
OTHER_MACHINE = {
    "ATEN_CPU_CAPABILITY": "default",  # ATen's own kernels: no AVX2 / AVX-512
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # convolutions
    "MKL_CBWR": "COMPATIBLE",  # matrix products of the linear layers
    "OPENBLAS_CORETYPE": "Prescott",  # numpy's BLAS and LAPACK: covariance, eigh
    "OMP_NUM_THREADS": "1",
}

SCRIPT = r"""
import hashlib, json, sys
from pathlib import Path

import initbench  # first, as the stages import it
import numpy as np
import torch
from PIL import Image

from initbench.data.dataset import Split
from initbench.data.ingest import ingest
from initbench.inits.kmeans import kmeans_conv1
from initbench.models.cnn import build_classifier
from initbench.inits.patches import prepare_patches, sample_patches
from initbench.data.transforms import Normalize
from initbench.models.cnn import seeded_encoder
from initbench.training.setup import configure_torch, resolve_device, run_info
from initbench.training.supervised import fit

def md5(*arrays):
    digest = hashlib.md5()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()

root = Path(sys.argv[1])
if not root.exists():
    rng = np.random.default_rng(0)
    for label, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 120, (40, 36, 3)) + 40 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
data = ingest(root, 16, 3, 0.2, 0.2, 0, workers=1)
images = torch.from_numpy(data.images)
labels = torch.from_numpy(data.labels)
normalize = Normalize([0.5] * 3, [0.25] * 3)
raw = sample_patches(normalize(images).numpy(), 3, 20, 100, 0)
patches = prepare_patches(raw, 0.1, True, 0.01)
encoder = seeded_encoder(3, [8, 16], [0.1, 0.1], 0)  # what init_random writes
init_random = md5(*[t.numpy() for t in encoder.state_dict().values()])
conv1 = encoder.blocks[0].conv
filters = kmeans_conv1(patches.whitened, patches.zca_matrix, conv1.weight.detach().numpy(),
                       conv1.bias.detach().numpy(), 0)
device = resolve_device("cpu")
configure_torch(device)
torch.manual_seed(0)
model = build_classifier(3, 16, 3, [8, 16], [0.1, 0.1], 32, 0.2)
split = Split(images, labels)
fit(model, normalize, split, split, epochs=1, min_steps=6, lr=1e-3, batch_size=8, seed=0,
    device=device, log=lambda line: None)
print(json.dumps({
    "ingest": md5(data.images, data.labels, data.split),
    "patches": md5(patches.whitened, patches.zca_mean, patches.zca_matrix),
    "init_random": init_random,
    "kmeans": md5(filters.weight, filters.bias),
    "kmeans_metrics": filters.metrics(patches.sampled, patches.dropped_flat),
    "trained": md5(*[t.detach().numpy() for t in model.state_dict().values()]),
    "run_info": run_info(device),
}))
"""


def _run(folder: Path, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in OTHER_MACHINE}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder)],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("repro") / "images"
    with_avx2 = {k: v for k, v in OTHER_MACHINE.items() if k != "ATEN_CPU_CAPABILITY"}
    return {
        "here": _run(folder, OMP_NUM_THREADS="2"),
        "again": _run(folder, OMP_NUM_THREADS="2"),
        "elsewhere": _run(folder, **OTHER_MACHINE),
        "elsewhere_with_avx2": _run(folder, **with_avx2),
    }


def test_one_machine_gives_the_same_bytes_every_time(runs):
    assert runs["here"] == runs["again"]


@pytest.mark.parametrize("elsewhere", ["elsewhere", "elsewhere_with_avx2"])
@pytest.mark.parametrize("output", ["ingest", "patches", "kmeans", "kmeans_metrics"])
def test_data_patches_and_kmeans_filters_do_not_depend_on_the_cpu(runs, output, elsewhere):
    assert runs["here"][output] == runs[elsewhere][output]


def test_the_seeded_default_init_needs_only_avx2(runs):
    """init_random (and the layers of the k-means checkpoint but conv1): the same on any
    CPU whose ATen kernels are AVX2 or newer; ATen's baseline build rounds the draw's
    scaling differently (no fused multiply-add)."""
    assert runs["here"]["init_random"] == runs["elsewhere_with_avx2"]["init_random"]
    assert runs["here"]["init_random"] != runs["elsewhere"]["init_random"]


def test_trained_weights_depend_on_the_cpu_and_the_metrics_say_on_what(runs):
    """If this starts failing because the weights agree, the README can promise more."""
    assert runs["here"]["trained"] != runs["elsewhere"]["trained"]
    (here,), (elsewhere,) = runs["here"]["run_info"], runs["elsewhere"]["run_info"]
    assert (here["threads"], elsewhere["threads"]) == (2, 1)
    assert elsewhere["cpu_capability"] == "DEFAULT"
    assert elsewhere["env"] == OTHER_MACHINE
