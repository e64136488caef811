"""A hold-out estimate of the default ECG model's whole recipe: one PTB-XL training fold is left out of
training *and* tuning (network, measurement model, weights, thresholds), then read as a test set.

    PYTHONPATH=. python scripts/ecg_default_holdout.py --fold 8 [--json out.json]

Trains into a throw-away registry (never the service's) and prints the held-out fold's macro and
per-finding AUROCs with 95% bootstrap intervals, for the combined read and the network alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from models.registry import ModelRegistry
from training.config import load_train_config
from training.ecg import train_ecg

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=int, default=8, help="the PTB-XL training fold to hold out (1-8)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "ecg-default.yaml")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    config = load_train_config(args.config)
    config.data.held_out_fold = args.fold
    config.tracking.enabled = False
    with tempfile.TemporaryDirectory(prefix="ecg-holdout-") as tmp:
        config.checkpoint_dir = Path(tmp) / "checkpoints"
        registered = train_ecg(config, registry=ModelRegistry(Path(tmp) / "registry"), progress=True)
        metrics = registered.card.metrics
    figures = {
        key: metrics[key]
        for key in (
            "test_auroc_ci",
            "test_auroc_network_ci",
            "val_auroc_ci",
            "cv_auroc_measurements_ci",
            "fusion",
            "best_epoch",
            "data_counts",
        )
    }
    figures["held_out_fold"] = args.fold
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
