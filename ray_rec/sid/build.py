"""The semantic-ID stage on Ray: embeddings -> fitted quantizers -> codes, index.json, report.

Independent fits (several methods, seeds or codebook sizes) run as parallel Ray tasks; the items are
then assigned to codes by tasks of ``assign_chunk`` items each, so a large catalogue is split across
the cluster. The driver only resolves collisions (they need every item's SID), writes the artifacts
of each fit into ``<run>/sid/<name>/`` and marks the stage done::

    codes.parquet   item_id, codes list<int64> (de-duplication level last when present)
    index.json      MiniOneRec format {"0": ["<a_236>", "<b_231>", "<c_226>"]}
    report.json     collisions, per-level usage and entropy, reconstruction error
    usage.png       items per code, per level
    stage.json      the config and headline numbers (a rerun with the same config is skipped)

Run it with ``ray-rec sid build --run runs/default --method rqkmeans_constrained`` or::

    paths = run_sid_builds([SIDConfig(method="rqkmeans"), SIDConfig(method="rqvae")])
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ray_rec import artifacts, stages
from ray_rec.errors import InputError, at
from ray_rec.io import save_figure, write_json
from ray_rec.paths import RunPaths
from ray_rec.sid.collisions import add_dedup_level, balance_last_level
from ray_rec.sid.config import SIDConfig
from ray_rec.sid.index_io import read_index_json, used_sizes, write_codes, write_index_json
from ray_rec.sid.quantize import Quantizer, check_embeddings, sample_rows
from ray_rec.sid.report import collision_stats, plot_usage, report_row, sid_report

__all__ = ["run_sid_build", "run_sid_builds", "import_index", "load_embeddings", "fit_method",
           "fit_parallel"]

def check_item_ids(item_ids: np.ndarray, where: str | Path, items_path: Path | None = None) -> None:
    """Refuse duplicate ids, and ids that differ from the run's items table when it exists."""
    uniq, counts = np.unique(item_ids, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{at(where, field='item_id')} item {int(uniq[counts > 1][0])} appears "
                         f"{int(counts.max())} times; every item needs exactly one row")
    if items_path is not None and items_path.is_file():
        expected = artifacts.read_items(items_path, columns=["item_id"]).column("item_id").to_numpy()
        missing, extra = np.setdiff1d(expected, uniq), np.setdiff1d(uniq, expected)
        if len(missing) or len(extra):
            example = f"{int(missing[0])} has no row" if len(missing) else f"{int(extra[0])} is not in {items_path}"
            raise InputError(f"{at(where, field='item_id')} item ids do not match {items_path}: "
                             f"{len(missing)} missing, {len(extra)} unknown (item {example}); "
                             "re-run the embedding stage on this run's items")


def load_embeddings(path: str | Path, items_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """EMBEDDINGS Parquet -> (item_ids (n,) int64, vectors (n, d) float32), sorted by item id."""
    item_ids, x = artifacts.read_embeddings(path)
    check_item_ids(item_ids, path, items_path)
    x = check_embeddings(x, where=str(path))
    order = np.argsort(item_ids, kind="stable")
    return item_ids[order], x[order]


def fit_method(x: np.ndarray, cfg: SIDConfig) -> tuple[Quantizer, np.ndarray | None]:
    """Fit ``cfg.method`` on (n, d) items -> (quantizer, the fit's own (n, L) codes or None).

    Only constrained k-means returns codes: its balanced assignment, which nearest-code encoding
    would not reproduce exactly.
    """
    from ray_rec.runtime import set_threads

    set_threads(cfg.resources.threads_per_worker)
    sizes = cfg.sizes
    check_embeddings(x, min_items=max(sizes))
    if cfg.method == "rqkmeans":
        from ray_rec.sid.rqkmeans import fit_rqkmeans
        return fit_rqkmeans(x, sizes, cfg.seed, cfg.kmeans_iters, cfg.resources.threads_per_worker), None
    if cfg.method == "rqkmeans_constrained":
        from ray_rec.sid.constrained import fit_constrained
        return fit_constrained(x, sizes, cfg.seed, cfg.balance_slack, cfg.constrained_init, cfg.constrained_iters)
    if cfg.method == "rqvae":
        from ray_rec.sid.rqvae import fit_rqvae
        return fit_rqvae(x, sizes, cfg.hidden_dims, cfg.latent_dim, cfg.seed, cfg.epochs, cfg.batch_size,
                         cfg.lr, cfg.beta, cfg.dead_code_every, cfg.kmeans_iters), None
    from ray_rec.sid.rqkmeans_plus import fit_rqkmeans_plus
    return fit_rqkmeans_plus(x, sizes, cfg.plus_hidden_dim, cfg.seed, cfg.balance_slack, cfg.constrained_init,
                             cfg.constrained_iters, cfg.epochs, cfg.batch_size, cfg.lr, cfg.beta, cfg.dead_code_every), None


def _fit_sample(x: np.ndarray, cfg: SIDConfig) -> tuple[Quantizer, np.ndarray | None, np.ndarray, float]:
    """Fit on ``cfg.fit_items`` sampled rows -> (quantizer, codes of those rows or None, the rows, seconds)."""
    start = time.perf_counter()
    rows = sample_rows(len(x), cfg.fit_items, cfg.seed)
    quantizer, codes = fit_method(x[rows], cfg)
    return quantizer, codes, rows, time.perf_counter() - start


def _encode(quantizer: Quantizer, x: np.ndarray, threads: int) -> np.ndarray:
    from ray_rec.runtime import set_threads

    set_threads(threads)
    return quantizer.encode(x)


def fit_parallel(x: np.ndarray, cfgs: list[SIDConfig]) -> list[tuple[Quantizer, np.ndarray | None, np.ndarray, float]]:
    """Fit every config on the same (n, d) items as parallel Ray tasks; results in config order."""
    import ray

    task = ray.remote(_fit_sample)
    x_ref = ray.put(x)
    return ray.get([task.options(num_cpus=c.resources.cpus_per_worker).remote(x_ref, c) for c in cfgs])


def assign_codes(quantizer: Quantizer, x: np.ndarray, rows: np.ndarray, cfg: SIDConfig) -> list[Any]:
    """Launch one Ray task per ``assign_chunk`` of ``rows``; return their refs ((m, L) codes each)."""
    import ray

    task = ray.remote(_encode)
    q_ref = ray.put(quantizer)
    return [task.options(num_cpus=cfg.resources.cpus_per_worker).remote(q_ref, x[rows[s:s + cfg.assign_chunk]],
                                                                 cfg.resources.threads_per_worker)
            for s in range(0, len(rows), cfg.assign_chunk)]


def resolve_collisions(quantizer: Quantizer, x: np.ndarray, codes: np.ndarray, cfg: SIDConfig) -> np.ndarray:
    """(n, L) -> Sinkhorn last-level re-assignment (if on) -> de-duplication level (if on)."""
    if cfg.use_sinkhorn:
        codes = balance_last_level(codes, lambda r: quantizer.last_level_cost(x[r], codes[r]),
                                   cfg.sinkhorn_epsilon, cfg.sinkhorn_iters)
    return add_dedup_level(codes) if cfg.dedup else codes


def write_sid_artifacts(out_dir: Path, item_ids: np.ndarray, codes: np.ndarray, report: dict[str, Any],
                        title: str) -> Path:
    """codes.parquet (with the codes per level: the quantizer's, then the de-duplication level's largest
    group), index.json, report.json and usage.png into ``out_dir``; return the codes path."""
    codes_path = write_codes(item_ids, codes, out_dir / "codes.parquet", report["sizes"])
    write_index_json(item_ids, codes, out_dir / "index.json")
    write_json(report, out_dir / "report.json")
    save_figure(plot_usage(codes, report["sizes"], title), out_dir / "usage.png")
    return codes_path


def _finish(cfg: SIDConfig, started: float, item_ids: np.ndarray, x: np.ndarray, quantizer: Quantizer,
            codes: np.ndarray, fit_seconds: float) -> Path:
    out_dir = RunPaths(cfg.run).sid_dir(cfg.out_name)
    final = resolve_collisions(quantizer, x, codes, cfg)
    report = sid_report(final, cfg.sizes, x, quantizer.decode(final[:, :cfg.levels]))
    report.update(method=cfg.method, sizes=cfg.sizes, assigned_collisions=collision_stats(codes),
                  fit_seconds=round(fit_seconds, 3),
                  seconds=round(time.time() - started, 3))
    codes_path = write_sid_artifacts(out_dir, item_ids, final, report, f"{cfg.out_name} ({cfg.method})")
    stages.finish("sid", cfg, started, **report_row(cfg.out_name, report))
    return codes_path


def run_sid_builds(cfgs: list[SIDConfig]) -> list[Path]:
    """Build every config's SIDs (fits in parallel as Ray tasks); return their codes paths."""
    from ray_rec.runtime import init_ray

    started = time.time()
    names = [str(RunPaths(c.run).sid_dir(c.out_name)) for c in cfgs]
    if len(set(names)) != len(names):
        raise InputError("two builds would write the same folder; give each a different name= (or method)")
    todo = [c for c in cfgs if not stages.up_to_date("sid", c)]
    for c in todo:
        stages.begin("sid", c)
    if todo:
        init_ray(num_cpus=todo[0].num_cpus or None, dashboard=False)
    for emb_path in sorted({_embeddings_path(c) for c in todo}):
        group = [c for c in todo if _embeddings_path(c) == emb_path]
        item_ids, x = load_embeddings(emb_path, RunPaths(group[0].run).items)
        _build_group(group, item_ids, x, started)
    return [RunPaths(c.run).codes(c.out_name) for c in cfgs]


def _embeddings_path(cfg: SIDConfig) -> Path:
    return Path(cfg.embeddings) if cfg.embeddings else RunPaths(cfg.run).embeddings


def _build_group(cfgs: list[SIDConfig], item_ids: np.ndarray, x: np.ndarray, started: float) -> None:
    import ray

    fits = fit_parallel(x, cfgs)
    pending = []
    for cfg, (quantizer, fit_codes, fit_rows, _) in zip(cfgs, fits, strict=True):
        codes = np.empty((len(x), cfg.levels), dtype=np.int64)
        rest = np.arange(len(x))
        if fit_codes is not None:
            codes[fit_rows] = fit_codes
            rest = np.setdiff1d(rest, fit_rows)
        pending.append((codes, rest, assign_codes(quantizer, x, rest, cfg)))
    for cfg, (quantizer, _, _, fit_seconds), (codes, rest, refs) in zip(cfgs, fits, pending, strict=True):
        if len(rest):
            codes[rest] = np.concatenate(ray.get(refs))
        _finish(cfg, started, item_ids, x, quantizer, codes, fit_seconds)


def run_sid_build(cfg: SIDConfig) -> Path:
    """Build one config's SIDs; return ``RunPaths(cfg.run).codes(cfg.out_name)``."""
    return run_sid_builds([cfg])[0]


def import_index(index_json: str | Path, run: str | Path, name: str, sizes: list[int] | None = None) -> Path:
    """Bring SIDs made elsewhere (MiniOneRec ``index.json``) into ``<run>/sid/<name>/``; return the codes path.

    ``sizes``: codes per level (default: largest code + 1). Every level counts as a quantizer level
    (an index.json does not say which level, if any, de-duplicates).
    """
    paths = RunPaths(run)
    item_ids, codes = read_index_json(index_json)
    check_item_ids(item_ids, index_json, stages.fetch(run, paths.items))
    out_dir = paths.sid_dir(name)
    sizes = sizes or used_sizes(codes)
    report = sid_report(codes, sizes)
    report.update(method="imported", source=str(index_json), sizes=sizes)
    codes_path = write_sid_artifacts(out_dir, item_ids, codes, report, f"{name} (imported)")
    write_json({"source": str(Path(index_json).resolve()), **collision_stats(codes)}, out_dir / "stage.json")
    if paths.storage.remote:
        paths.storage.push(out_dir)
    return codes_path

