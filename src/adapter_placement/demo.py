"""End-to-end demo on the embedded default: score every edge, pick adapters with GGA, train them.

On a real pretrained model (all-MiniLM-L6-v2) and real data (the VADER lexicon's human ratings):

1. train the classifier head alone (App. A.4), then score all n^2 edges by the srank of their
   one-pass gradient (Sec. 6.1);
2. pick N edges with GGA (gamma 0.6), top-N (gamma 0), first-N, last-N and a random N;
3. train each placement, plus the linear probe and the 2L parallel adapters, and report
   validation and test accuracy.

    python -m adapter_placement.demo --out results/demo/vader_sst2/metrics.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import atomic, placements
from .data import load_task
from .gga import gga_select
from .models import load_model
from .scores import score_edges, train_head
from .tracking import config_hash
from .data import num_classes_of
from .train import TrainConfig, train

DEFAULTS = dict(dataset="vader_sst2", model="minilm", score_batch_size=256, head_steps=10,
                score_fn="srank", eta=0.01, gamma=0.6, num_adapters=3, rank=8, steps=150,
                batch_size=32, lr=1e-3, seed=0)


def score_all_edges(cfg: dict) -> torch.Tensor:
    """Head pre-training, then the score of every edge from one batch of ``score_batch_size``."""
    torch.manual_seed(cfg["seed"])
    loaded = load_model(cfg["model"], num_classes_of(cfg["dataset"]))
    task = load_task(cfg["dataset"], seed=cfg["seed"], tokenizer=loaded.tokenizer, data_config=loaded.data_config)
    batches = list(task.batches("train", cfg["batch_size"], shuffle=True, seed=cfg["seed"], drop_last=True))
    optimizer = "adamw" if loaded.modality == "text" else "sgd"
    train_head(loaded.model, batches, cfg["head_steps"], lr=cfg["lr"] * 10, optimizer=optimizer)
    score_batch = next(task.batches("train", cfg["score_batch_size"], shuffle=True, seed=cfg["seed"] + 1))
    return score_edges(loaded.model, [score_batch], fn=cfg["score_fn"], eta=cfg["eta"])


def candidate_placements(scores: torch.Tensor, cfg: dict) -> dict[str, list]:
    n, k = scores.shape[0], cfg["num_adapters"]
    return {
        f"gga_{k}": gga_select(scores, k, cfg["gamma"]),
        f"topk_{k}": gga_select(scores, k, 0.0),
        f"first_{k}": placements.first_k(n, k),
        f"last_{k}": placements.last_k(n, k),
        f"random_{k}": placements.random(n, k, seed=cfg["seed"]),
        "parallel_all": placements.parallel_all(n),
    }


def run(cfg: dict, out: Path) -> dict:
    started = time.perf_counter()
    scores = score_all_edges(cfg)
    runs = {"linear_probe": []} | candidate_placements(scores, cfg)
    base = dict(dataset=cfg["dataset"], model=cfg["model"], rank=cfg["rank"], lr=cfg["lr"],
                seed=cfg["seed"], data_seed=cfg["seed"], steps=cfg["steps"], batch_size=cfg["batch_size"],
                eval_splits=("val", "test"), experiment="demo", cache_dir=str(out.parent / "cache"),
                tracking_uri=cfg.get("tracking_uri"))
    results, key = {}, config_hash(cfg)  # a changed config never reuses another config's runs
    for name, edges in runs.items():
        method = "linear_probe" if name == "linear_probe" else "adapters"
        metrics = train(TrainConfig(method=method, edges=edges, prefix_cache=True, tags={"demo": name},
                                    **base), out.parent / "runs" / f"{name}-{key}")
        results[name] = {"edges": [list(e) for e in edges], "val_accuracy": metrics["val_accuracy"],
                         "test_accuracy": metrics["test_accuracy"], "seconds": metrics["seconds"],
                         "mlflow_run_id": metrics.get("mlflow_run_id")}
    summary = {"config": cfg, "scores": scores.tolist(), "runs": results,
               "seconds": time.perf_counter() - started}
    atomic.write_json(out, summary)
    return summary


def print_table(summary: dict) -> None:
    print(f"\n{'placement':<14} {'val acc':>8} {'test acc':>8}  edges")
    for name, r in summary["runs"].items():
        edges = " ".join(f"({i},{j})" for i, j in r["edges"][:6]) + (" ..." if len(r["edges"]) > 6 else "")
        print(f"{name:<14} {r['val_accuracy']:8.3f} {r['test_accuracy']:8.3f}  {edges}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="where the summary JSON goes")
    parser.add_argument("--config-json", default="{}", help="overrides of the defaults, as JSON")
    args = parser.parse_args(argv)
    cfg = DEFAULTS | json.loads(args.config_json)
    print_table(run(cfg, Path(args.out)))


if __name__ == "__main__":
    main()
