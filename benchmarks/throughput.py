"""Print training throughput of each model on synthetic batches (no data files needed).

    python benchmarks/throughput.py                 # CPU, or CUDA when present
    python benchmarks/throughput.py --device cpu --steps 20

Figures: images/s for a fine-tune step, an autoencoder step, image pairs/s for a
SimCLR step (augmentation included), and augmented views/s alone. The models are
``params.yaml``'s (``model``, ``simclr.projection_dim``), built as the stages build them
(``benchmarks/common.py``); the images are its generated gratings, at ``data``'s image
size and channels unless ``--image-size`` or ``--channels`` say otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import common

from initbench.core.errors import ParamsError
from initbench.inits.augment import simclr_view
from initbench.inits.losses import nt_xent
from initbench.training.setup import configure_torch, resolve_device


def rate(step: Callable[[], None], items: int, steps: int, device: torch.device) -> float:
    """Items per second over ``steps`` calls of ``step``, after two warm-up calls."""
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return items * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--channels", type=int, choices=[1, 3],
                        help="default: params.yaml's data.channels")  # fmt: skip
    parser.add_argument("--image-size", type=int, help="default: params.yaml's data.image_size")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    try:
        params = common.bench_params(image_size=args.image_size, channels=args.channels)
    except ParamsError as exc:
        parser.error(str(exc))
    data = params.data
    device = resolve_device(args.device)
    configure_torch(device)
    c, s, b = data.channels, data.image_size, args.batch_size
    images, labels = common.gratings(b, seed=0, image_size=s, channels=c)
    x = (images.float() / 255).to(device)  # (B, C, H, W) on 0..1
    y = labels.to(device)
    generator = torch.Generator().manual_seed(0)

    def trainer(model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            loss = loss_fn()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    classifier = common.classifier(params, seed=0).to(device)
    autoencoder = common.autoencoder(params, seed=0).to(device)
    simclr = common.simclr(params, seed=0).to(device)

    def simclr_loss() -> torch.Tensor:
        views = [simclr_view(x, generator) for _ in range(2)]
        return nt_xent(simclr(views[0]), simclr(views[1]), 0.5)

    figures = {
        "finetune step (images/s)": rate(
            trainer(classifier, lambda: nn.functional.cross_entropy(classifier(x), y)),
            b, args.steps, device,
        ),
        "autoencoder step (images/s)": rate(
            trainer(autoencoder, lambda: nn.functional.mse_loss(autoencoder(x), x)),
            b, args.steps, device,
        ),
        "simclr step incl. augmentation (image pairs/s)": rate(
            trainer(simclr, simclr_loss), b, args.steps, device
        ),
        "simclr augmentation alone (views/s)": rate(
            lambda: simclr_view(x, generator), b, args.steps, device
        ),
    }  # fmt: skip
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {b}, "
          f"{c}x{s}x{s} images")  # fmt: skip
    for name, value in figures.items():
        print(f"{name:<48} {value:>10,.0f}")


if __name__ == "__main__":
    main()
