"""SFT step time against padding: one random global batch cut into micro-batches as drawn, or after
ordering it by length (``train.sort_micro_batches``), on a real run folder.

Whole-sequence examples (``sid_seq``) range from a few tokens to hundreds, so a random batch padded to
its longest example is mostly padding. Ordering the step's examples longest first before cutting them
into micro-batches keeps the same examples in the same optimizer step (the same gradient: the loss is
normalised per labelled token of the step) while each micro-batch is only as wide as its own longest
example. Every variant runs the same steps from the same initial weights, in alternating rounds so that
machine load hits them alike; reported are real tokens/s, the share of padded positions and the
ratio of each variant's step time to the plain one (one micro-batch of the whole global batch).

    .venv/bin/python bench/sft_padding.py --run /tmp/sasrec_bench/beauty-leave_one_out --sid-method sasrec_cf

Needs the run folder's data and ``sid/<sid-method>/codes.parquet`` (e.g. from bench/quality.py).
Writes bench/results/sft_padding.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402


def parse_variant(text: str) -> tuple[int, bool]:
    """'16s' -> (16, True): micro-batch size, sorted by length; '64' -> (64, False)."""
    return int(text.rstrip("s")), text.endswith("s")


def time_variant(model, cfg, train, steps: int, micro: int, sort: bool, pad_id: int) -> dict[str, float]:
    """Forward, backward and optimizer step of ``steps`` global batches; seconds, tokens, positions."""
    import torch

    from ray_rec.train.batch import SFTBackend, tokens_per_micro_batch, train_step
    from ray_rec.trainer.schedule import rank_indices

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=micro,
                                                             sort_micro_batches=sort))
    backend = SFTBackend(model, cfg, torch.device("cpu"), tokens_per_micro_batch(train, cfg))
    backend.set_lr(cfg.train.lr)
    backend.train(True)
    lengths = np.diff(train.offsets)
    seconds, tokens, positions = 0.0, 0, 0
    for step in range(steps):
        mine = rank_indices(step, len(train), cfg, 0)
        started = time.perf_counter()
        _, step_tokens, step_positions = train_step(backend, train, mine, cfg, pad_id, lengths)
        seconds += time.perf_counter() - started
        tokens, positions = tokens + step_tokens, positions + step_positions
    return {"seconds": seconds, "tokens": tokens, "positions": positions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder with data/ and sid/<sid-method>/")
    parser.add_argument("--sid-method", default="shipped", help="which sid/<name>/codes.parquet")
    parser.add_argument("--config", default=str(ROOT / "jobs/configs/sft_cpu.yaml"), help="SFT YAML (tasks, model)")
    parser.add_argument("--variants", default="64,16,16s,8s", help="micro-batch sizes; suffix s = sorted by length")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="sft_padding")
    args = parser.parse_args(argv)

    import torch

    from ray_rec.config import load_config
    from ray_rec.lm.model import build_model
    from ray_rec.runtime import set_threads, setup_env
    from ray_rec.train.config import SFTConfig
    from ray_rec.train.run import prepare_inputs

    setup_env()
    set_threads(args.threads)
    cfg = load_config(SFTConfig, args.config, [f"run={args.run}", f"sid_method={args.sid_method}",
                                               "name=bench_padding", "resources.workers=1"])
    inputs = prepare_inputs(cfg)
    train, tokenizer = inputs["train"], inputs["tokenizer"]
    pad_id = int(tokenizer.pad_token_id)
    initial = build_model(cfg.model, tokenizer, seed=cfg.train.seed)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for v in variants:
            micro, sort = parse_variant(v)
            torch.manual_seed(0)
            runs[v].append(time_variant(copy.deepcopy(initial), cfg, train, args.steps, micro, sort, pad_id))
            r = runs[v][-1]
            print(f"round {round_} {v:>4}: {r['seconds']:.1f} s, {r['tokens'] / r['seconds']:.0f} tok/s, "
                  f"padding {1 - r['tokens'] / r['positions']:.0%}", flush=True)
    base = statistics.median(r["seconds"] for r in runs[variants[0]])
    results: dict[str, Any] = {"run": args.run, "sid_method": args.sid_method, "steps": args.steps,
                               "rounds": args.rounds, "threads": args.threads,
                               "global_batch_size": cfg.train.global_batch_size, "train_examples": len(train),
                               "mean_tokens_per_example": float(np.diff(train.offsets).mean()), "variants": {}}
    for v in variants:
        sec = statistics.median(r["seconds"] for r in runs[v])
        r = runs[v][0]
        results["variants"][v] = {"micro_batch_size": parse_variant(v)[0], "sorted": parse_variant(v)[1],
                                  "seconds": [round(x["seconds"], 2) for x in runs[v]],
                                  "tokens_per_s": round(r["tokens"] * args.rounds / sum(x["seconds"] for x in runs[v])),
                                  "padding": round(1 - r["tokens"] / r["positions"], 3),
                                  f"time_over_{variants[0]}": round(sec / base, 3)}
    write_result(args.name, results)
    for v, row in results["variants"].items():
        print(f"{v:>4}: {row['tokens_per_s']} tok/s, padding {row['padding']:.0%}, "
              f"time / {variants[0]} {row[f'time_over_{variants[0]}']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
