"""Ray Tune sweep of the toy model: learning rate, embedding size, history length, batch size and
pooling, with ASHA stopping weak trials early on validation NDCG@10.

Each trial runs the same loop as ``ray-rec toy train`` in one process on the same sequences (sampled
``max_len`` only changes how much history the model sees). Outputs in
``RunPaths(run).toy_tune_dir(tune.name)``, beside Tune's trial folders:

    best_config.yaml   a full toy config with the best trial's values: ray-rec toy train --config it
    results.csv/.md    one row per trial: sampled values, epochs run, final validation metrics
    trials.png         validation NDCG@10 per epoch of every trial

Run it::

    ray-rec toy tune --config jobs/configs/toy.yaml --set tune.num_samples=8
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ray_rec import stages
from ray_rec.config import from_dict, to_dict
from ray_rec.errors import InputError
from ray_rec.io import atomic_path, save_figure, write_json, write_text
from ray_rec.paths import RunPaths
from ray_rec.toy.config import ToyConfig
from ray_rec.toy.loop import fit

METRIC = "ndcg@10"
# Config fields that do not change the sweep's outcome (each trial runs in one process).
# sampled key -> (config section, field)
SEARCHED = {"lr": ("train", "lr"), "embed_dim": ("model", "embed_dim"), "max_len": ("data", "max_len"),
            "batch_size": ("train", "batch_size"), "pooling": ("model", "pooling")}


class TuneSession:
    """The loop's view of a Tune trial: one process, metrics to ``ray.tune.report`` (no checkpoints:
    trials are short and ASHA only needs the metric)."""

    def __init__(self, device: str) -> None:
        self.rank, self.world_size = 0, 1
        self.device = torch.device("cuda" if device == "cuda" else "cpu")

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def restore(self) -> dict[str, Any] | None:
        return None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        from ray import tune

        tune.report(metrics)


def trial_config(base: dict[str, Any], sampled: dict[str, Any]) -> ToyConfig:
    """The base config (as a dict) with one trial's sampled values written into their sections."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in sampled.items():
        section, field = SEARCHED[key]
        data[section][field] = value
    return from_dict(ToyConfig, {**data, "resources": {**data.get("resources", {}), "workers": 1}})


def tune_trial(sampled: dict[str, Any], base: dict[str, Any], seqs: list[list[int]]) -> None:
    """Tune's trainable: train one sampled config, reporting validation metrics every epoch."""
    from ray_rec.runtime import setup_env

    setup_env()  # the project's environment, whatever the node's raylet was started with
    from ray_rec.runtime import set_threads

    cfg = trial_config(base, sampled)
    set_threads(max(1, int(cfg.tune.cpus_per_trial)))
    fit(cfg, seqs, TuneSession(cfg.resources.device))


def search_space(cfg: ToyConfig) -> dict[str, Any]:
    from ray import tune

    t = cfg.tune
    return {"lr": tune.loguniform(t.lr[0], t.lr[1]) if t.lr[0] < t.lr[1] else t.lr[0],
            "embed_dim": tune.choice(t.embed_dim), "max_len": tune.choice(t.max_len),
            "batch_size": tune.choice(t.batch_size), "pooling": tune.choice(t.pooling)}


def run_toy_tune(cfg: ToyConfig) -> dict[str, Any]:
    """Run the sweep -> {"best_config": sampled values, "best_metrics": .., "dir": sweep folder}."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from ray_rec.runtime import init_ray
    from ray_rec.toy.data import load_sequences
    from ray_rec.toy.train import check_device

    started = time.time()
    paths = RunPaths(cfg.run)
    out = paths.toy_tune_dir(cfg.tune.name)
    if stages.up_to_date("toy_tune", cfg):
        print(f"[toy] {out} already holds this sweep; delete it or change the config to rerun", flush=True)
        return json.loads((out / "summary.json").read_text())
    seqs = load_sequences(cfg.data, cfg.seed)  # bad JSONL fails here, before anything is written
    stages.begin("toy_tune", cfg)
    init_ray()
    check_device(cfg)
    t = cfg.tune
    resources = {"cpu": t.cpus_per_trial, **({"gpu": 1} if cfg.resources.use_gpu else {})}
    trainable = tune.with_resources(tune.with_parameters(tune_trial, base=to_dict(cfg), seqs=seqs), resources)
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(cfg),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=t.num_samples, max_concurrent_trials=t.max_concurrent,
            scheduler=ASHAScheduler(max_t=cfg.train.epochs, grace_period=min(t.grace_period, cfg.train.epochs),
                                    reduction_factor=t.reduction_factor),
            search_alg=_seeded_search(cfg.seed)),
        run_config=tune.RunConfig(name=t.name, storage_path=paths.storage.train_storage(out.parent)[0],
                                  storage_filesystem=paths.storage.train_storage(out.parent)[1]),
    )
    grid = tuner.fit()
    if grid.errors and len(grid.errors) == len(grid):
        raise InputError(f"every trial of sweep {t.name!r} failed; the first error: {grid.errors[0]}")
    best = grid.get_best_result(metric=METRIC, mode="max")
    rows = [_trial_row(r) for r in grid if r.metrics]
    rows.sort(key=lambda r: -r[METRIC])
    write_best_config(trial_config(to_dict(cfg), _sampled(best.config)), best.metrics, out / "best_config.yaml")
    _write_table(rows, out)
    plot_trials(grid, out / "trials.png")
    summary = {"best_config": _sampled(best.config), "best_metrics": _plain(best.metrics), "dir": paths.location(out),
               "trials": len(grid), "errors": len(grid.errors), "seconds": round(time.time() - started, 1)}
    write_json(summary, out / "summary.json")
    stages.finish("toy_tune", cfg, started, trials=len(grid))
    print(f"[toy] best trial: {METRIC} {best.metrics[METRIC]:.4f} with {summary['best_config']}\n"
          f"[toy] sweep results in {out}", flush=True)
    return summary


def _seeded_search(seed: int) -> Any:
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def _sampled(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config[k] for k in SEARCHED if k in config}


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not k.startswith("config")}


def _trial_row(result: Any) -> dict[str, Any]:
    m = result.metrics
    row = {"trial": str(m.get("trial_id", Path(result.path).name)), **_sampled(result.config)}
    row.update({"epochs": m.get("epoch", 0), "train_loss": m.get("train_loss", float("nan"))})
    row.update({k: m[k] for k in m if k.startswith(("hr@", "ndcg@"))})
    return row


def write_best_config(cfg: ToyConfig, metrics: dict[str, Any], path: Path) -> None:
    """The best trial as a complete, commented config file that ``ray-rec toy train`` accepts."""
    data = to_dict(cfg)
    data["name"] = f"{cfg.tune.name}-best"
    data["resources"]["workers"] = 1
    paths = RunPaths(cfg.run)  # on object storage the file stays at its URI; train from a local copy of it
    config = f"<a local copy of {paths.location(path)}>" if paths.storage.remote else str(path)
    head = (f"# Best trial of sweep {cfg.tune.name!r}: {METRIC} = {metrics[METRIC]:.4f} "
            f"after {metrics.get('epoch')} epochs.\n# Train it: ray-rec toy train --config {config}\n")
    write_text(head + yaml.safe_dump(data, sort_keys=False), path)


def _write_table(rows: list[dict[str, Any]], out: Path) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    write_text("\n".join(lines) + "\n", out / "results.md")
    with atomic_path(out / "results.csv") as tmp:
        tmp.write_text("\n".join([",".join(cols)] + [",".join(cell(r.get(c, "")) for c in cols) for r in rows]) + "\n")


def plot_trials(grid: Any, path: Path) -> None:
    """Validation NDCG@10 per epoch, one line per trial (ASHA-stopped trials end early)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for result in grid:
        df = result.metrics_dataframe
        if df is None or METRIC not in df:
            continue
        c = _sampled(result.config)
        label = f"lr={c['lr']:.2g} d={c['embed_dim']} L={c['max_len']} bs={c['batch_size']} {c['pooling']}"
        ax.plot(df["epoch"], df[METRIC], marker="o", label=label)
    ax.set(xlabel="epoch", ylabel=f"validation {METRIC}", title="Tune trials (ASHA)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
