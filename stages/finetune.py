"""Stage finetune: train the classifier from ``artifacts/init/${init}.pt``; report test metrics."""

import argparse
from pathlib import Path

from initbench.cli import run
from initbench.data import Split, label_subset, load_dataset
from initbench.files import write_json, write_torch
from initbench.model import build_classifier
from initbench.params import load_params
from initbench.train import Normalize, evaluate, fit, resolve_device, set_seed
from initbench.transfer import load_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="folder written by ingest")
    parser.add_argument("--init", required=True, help="init checkpoint to start from")
    parser.add_argument("--model", required=True, help="fine-tuned model to write")
    parser.add_argument("--metrics", required=True, help="test metrics (JSON)")
    parser.add_argument("--plots", required=True, help="folder for plot data (JSON)")
    args = parser.parse_args()
    params = load_params()
    p, m = params.finetune, params.model
    device = resolve_device(params.device)
    data = load_dataset(args.dataset)
    set_seed(params.seed)
    model = build_classifier(data.channels, data.image_size, len(data.classes), m.channels,
                             m.dropout, m.hidden, m.head_dropout)  # fmt: skip
    load_init(model, args.init, data.encoder_meta(m.channels))
    model.to(device)
    normalize = Normalize(data.mean, data.std).to(device)
    train = data.splits["train"]
    keep = label_subset(train.labels, p.label_fraction, params.seed)
    train = Split(train.images[keep], train.labels[keep])
    history, best_state = fit(
        model, normalize, train, data.splits["val"], epochs=p.epochs, lr=p.lr,
        batch_size=p.batch_size, seed=params.seed, device=device,
        freeze_encoder=p.freeze_encoder,
    )  # fmt: skip
    model.load_state_dict(best_state)
    test = evaluate(model, normalize, data.splits["test"], device)
    best = max(history, key=lambda row: row["val_accuracy"])
    metrics = {"init": params.init, "seed": params.seed, "accuracy": round(test.accuracy, 6),
               "macro_f1": round(test.macro_f1, 6), "test_loss": round(test.loss, 6),
               "best_val_accuracy": best["val_accuracy"], "best_epoch": best["epoch"],
               "train_images": len(train)}  # fmt: skip
    write_torch(args.model, {"state_dict": {k: v.cpu() for k, v in best_state.items()},
                             "classes": data.classes, "init": params.init})  # fmt: skip
    write_json(args.metrics, metrics)
    plots = Path(args.plots)
    write_json(plots / "history.json", history)
    actual = data.splits["test"].labels.tolist()
    write_json(plots / "confusion.json", [
        {"actual": data.classes[a], "predicted": data.classes[b]}
        for a, b in zip(actual, test.predictions.tolist(), strict=True)
    ])  # fmt: skip
    print(f"finetune ({params.init}): test accuracy {test.accuracy:.4f}, "
          f"macro-F1 {test.macro_f1:.4f} (best val {best['val_accuracy']:.4f} at epoch "
          f"{best['epoch']})")  # fmt: skip


if __name__ == "__main__":
    run(main)
