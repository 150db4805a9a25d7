"""How spread out are the top-K lists? The generative model's (from an evaluation's predictions)
against our SASRec's, measured on the SID tree both are scored on.

A generative model scores an item as p(c1) p(c2 | c1) p(c3 | c1, c2): its list can bunch under the
few first codes it believes in. This benchmark counts, per user and averaged over the split:

* ``distinct_level1`` / ``distinct_level2`` -- distinct SID prefixes of length 1 / 2 in the top K;
* ``target_level1_covered`` -- the target's first code is among the top K's first codes;
* ``top1_level1_right`` -- the first item's first code is the target's;
* ``hr`` -- the target is in the top K.

Reads a run folder as ``bench/quality.py`` leaves it: <run>/data/samples_<split>.parquet,
<run>/baseline/sasrec/model, <run>/sid/<sids>/codes.parquet, <run>/eval/<eval>/<split>/predictions.parquet.

Run:  .venv/bin/python bench/topk_spread.py --run /tmp/sasrec_bench/scientific-leave_one_out \\
          --sids sasrec_cf64 --eval sft-bench [--k 10] [--name topk_spread_sci]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import write_result  # noqa: E402
from ray_rec import artifacts  # noqa: E402
from ray_rec.baseline.sasrec import SASRec  # noqa: E402
from ray_rec.baseline.train import pad_left, samples_arrays  # noqa: E402
from ray_rec.paths import RunPaths  # noqa: E402
from ray_rec.sid.index_io import codes_arrays  # noqa: E402


@torch.no_grad()
def sasrec_topk(model_dir: Path, samples: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(targets (N,), top-k item ids (N, k)) of a trained SASRec on a samples file."""
    model = SASRec.load(model_dir)
    _, history, targets = samples_arrays(artifacts.read_samples(samples), model.num_items, samples)
    inputs = pad_left(history, model.max_len)
    tops = []
    for start in range(0, len(inputs), 512):
        scores = model.score(torch.as_tensor(inputs[start:start + 512]))
        scores[:, 0] = -torch.inf  # column 0 is padding; columns are item id + 1
        tops.append(scores.topk(k, dim=1).indices.numpy() - 1)
    return targets, np.concatenate(tops)


def spread(targets: np.ndarray, top: np.ndarray, codes_of: dict[int, np.ndarray]) -> dict[str, float]:
    """The module docstring's statistics for one model's top-k lists."""
    level1 = [{int(codes_of[i][0]) for i in row} for row in top]
    level2 = [{tuple(codes_of[i][:2].tolist()) for i in row} for row in top]
    first = np.array([int(codes_of[t][0]) for t in targets])
    return {
        "distinct_level1": round(float(np.mean([len(s) for s in level1])), 3),
        "distinct_level2": round(float(np.mean([len(s) for s in level2])), 3),
        "target_level1_covered": round(float(np.mean([f in s for f, s in zip(first, level1, strict=True)])), 4),
        "top1_level1_right": round(float(np.mean([int(codes_of[row[0]][0]) == f
                                                  for row, f in zip(top, first, strict=True)])), 4),
        "hr": round(float(np.mean([t in row for t, row in zip(targets, top, strict=True)])), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run folder (bench/quality.py's work dir per data set)")
    parser.add_argument("--sids", required=True, help="<run>/sid/<sids>/codes.parquet: the SID tree")
    parser.add_argument("--eval", required=True, help="<run>/eval/<eval>/<split>/predictions.parquet")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--name", default="topk_spread")
    args = parser.parse_args()
    paths = RunPaths(args.run)

    item_ids, codes = codes_arrays(artifacts.read_codes(paths.codes(args.sids)))
    codes_of = dict(zip(item_ids.tolist(), codes, strict=True))
    predictions = pq.read_table(paths.eval_dir(args.eval, args.split) / "predictions.parquet", columns=["target", "items"])
    gen_targets = predictions.column("target").to_numpy()
    gen_top = np.array([row[:args.k] for row in predictions.column("items").to_pylist()])
    if (gen_top < 0).any():
        raise SystemExit(f"some users have fewer than {args.k} predicted items; evaluate with top_k >= {args.k}")
    sas_targets, sas_top = sasrec_topk(paths.sasrec_model, paths.samples(args.split), args.k)
    if not np.array_equal(np.sort(gen_targets), np.sort(sas_targets)):
        raise SystemExit("the predictions and the samples file disagree on the targets: different splits?")

    results = {"run": args.run, "sids": args.sids, "eval": args.eval, "split": args.split, "k": args.k,
               "users": len(gen_targets), "generative": spread(gen_targets, gen_top, codes_of),
               "sasrec": spread(sas_targets, sas_top, codes_of)}
    for model in ("generative", "sasrec"):
        print(f"{model:>10}: " + ", ".join(f"{key} {value}" for key, value in results[model].items()))
    write_result(args.name, results)


if __name__ == "__main__":
    main()
