"""SFT throughput: a plain single-process loop vs Ray Train TorchTrainer with DDP and with DeepSpeed
ZeRO-2, at 1 and 2 workers, on the same model, data and global batch.

Every variant runs the same optimizer steps (same examples, micro-batch and global batch; 1 worker
accumulates twice the micro-batches of 2) and measures training tokens/s over the steps after the
first (forward, backward, optimizer step; no evaluation or checkpoint), plus the peak memory of a
worker process (max RSS on CPU, max allocated on GPU). The plain loop runs in a fresh Ray worker
process (one task, no Ray Train, no process group) so that its memory is measured the same way.
Ratios against the plain loop are printed and everything goes to bench/results/sft_throughput.json.

    .venv/bin/python bench/sft_throughput.py                 # about 10 min on 2 busy cores
    .venv/bin/python bench/sft_throughput.py --steps 40 --hidden 256 --layers 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_result  # noqa: E402
from ray_rec.runtime import init_ray, setup_env  # noqa: E402

setup_env()


def make_run(root: Path, n_items: int = 400, n_users: int = 400, seq_len: int = 12, seed: int = 0) -> None:
    """A synthetic run folder: titled items, 3-level SIDs (32 codes each), random-walk user sequences."""
    import pyarrow as pa

    from ray_rec.io import write_parquet
    from ray_rec.paths import RunPaths
    from ray_rec.schema import CODES, ITEMS, SAMPLES

    rng = np.random.default_rng(seed)
    paths = RunPaths(root)
    words = ["tape", "glue", "drill", "saw", "glove", "mask", "pipe", "valve", "screw", "bolt", "nut", "wire"]
    titles = [" ".join(rng.choice(words, 4)) + f" {i}" for i in range(n_items)]
    write_parquet(pa.table({"item_id": np.arange(n_items), "title": titles, "description": [""] * n_items,
                            "brand": [""] * n_items, "categories": [[]] * n_items, "text": titles}), paths.items, ITEMS)
    codes = [[int(c) for c in rng.integers(32, size=3)] for _ in range(n_items)]
    write_parquet(pa.table({"item_id": np.arange(n_items), "codes": codes}), paths.codes("rqkmeans"), CODES)
    rows: dict[str, list] = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        seq = np.cumsum(rng.integers(1, 4, size=seq_len)) % n_items
        for k in range(1, seq_len):
            split = "test" if k == seq_len - 1 else "valid" if k == seq_len - 2 else "train"
            rows[split].append((u, [int(x) for x in seq[max(0, k - 10):k]], int(seq[k])))
    for split, r in rows.items():
        write_parquet(pa.table({"user_id": [x[0] for x in r], "history": [x[1] for x in r],
                                "target": [x[2] for x in r]}), paths.samples(split), SAMPLES)


def plain_loop(cfg, data: dict[str, Any]) -> dict[str, float]:
    """The same optimizer steps in one process: no Ray Train, no process group, no DeepSpeed."""
    import torch

    from ray_rec.lm.model import build_model
    from ray_rec.runtime import set_threads
    from ray_rec.train.batch import collate, response_loss
    from ray_rec.trainer.backend import param_groups
    from ray_rec.trainer.progress import Meter, peak_memory_mb
    from ray_rec.trainer.schedule import get_lr, rank_indices

    set_threads(cfg.resources.threads_per_worker)
    tok, train = data["tokenizer"], data["train"]
    model = build_model(cfg.model, tok, seed=cfg.train.seed).train()
    opt = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, betas=(0.9, 0.95))
    meter, micro = Meter(), cfg.train.micro_batch_size
    lengths = np.diff(train.offsets) if cfg.train.group_by_length else None  # as the training loop does
    for step in range(cfg.train.max_steps):
        for g in opt.param_groups:
            g["lr"] = get_lr(step, cfg.train.max_steps, cfg.train.lr, cfg.train.warmup_steps, cfg.train.min_lr_ratio)
        mine, tokens, t0 = rank_indices(step, len(train), cfg, 0, lengths), 0, time.perf_counter()
        for m in range(cfg.grad_accum):
            batch = collate(train, mine[m * micro:(m + 1) * micro], int(tok.pad_token_id))
            tokens += int(batch["attention_mask"].sum())
            total, count = response_loss(model, batch)
            (total / count.clamp(min=1) / cfg.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        meter.add(tokens, time.perf_counter() - t0)
    return {"tokens_per_s": meter.rate(), "peak_memory_mb_per_worker": peak_memory_mb(torch.device("cpu"))}


def variant_config(base: list[str], backend: str, workers: int):
    from ray_rec.config import load_config
    from ray_rec.train.config import SFTConfig

    return load_config(SFTConfig, None, base + [f"train.backend={backend}", f"resources.workers={workers}",
                                                f"name=bench-{backend}-{workers}w-{int(time.time())}"])


def run_trainer(cfg, data_ref) -> dict[str, float]:
    from ray_rec.train.run import make_trainer

    started = time.perf_counter()
    result = make_trainer(cfg, data_ref).fit()
    if result.error:
        raise RuntimeError(result.error)
    m = result.metrics
    return {"tokens_per_s": m["tokens_per_s"], "peak_memory_mb_per_worker": m["peak_memory_mb_per_worker"],
            "wall_s_incl_startup": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per variant")
    parser.add_argument("--hidden", type=int, default=128, help="model hidden size")
    parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
    parser.add_argument("--micro", type=int, default=8, help="micro-batch size per worker")
    parser.add_argument("--global-batch", type=int, default=32, help="examples per optimizer step")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every variant (the median is reported)")
    args = parser.parse_args()

    import ray

    from ray_rec.train.run import prepare_inputs

    init_ray(num_cpus=4, dashboard=False)
    root = Path(tempfile.mkdtemp(prefix="sft_bench_"))
    make_run(root)
    base = [f"run={root}", f"model.hidden_size={args.hidden}", f"model.num_layers={args.layers}",
            f"train.micro_batch_size={args.micro}", f"train.global_batch_size={args.global_batch}",
            f"train.max_steps={args.steps}", f"train.eval_every={args.steps}", "train.valid_max_samples=16",
            f"train.log_every={args.steps}", "model.bpe_vocab_size=1000", "tasks.sid_to_title=0.5"]
    one = variant_config(base, "ddp", 1)
    inputs = prepare_inputs(one)
    data = {k: inputs[k] for k in ("tokenizer", "train", "valid", "first_new_id")}
    ref = ray.put(data)
    results: dict[str, Any] = {"config": {**vars(args), "train_examples": len(data["train"]),
                                          "mean_tokens_per_example": float(np.diff(data["train"].offsets).mean())}}
    plain = ray.remote(num_cpus=1, max_calls=1)(plain_loop)
    variants = [("plain_1w", None, 1), ("ddp_1w", "ddp", 1), ("zero2_1w", "deepspeed", 1),
                ("ddp_2w", "ddp", 2), ("zero2_2w", "deepspeed", 2)]
    runs: dict[str, list[dict[str, float]]] = {key: [] for key, _, _ in variants}
    for r in range(args.rounds):  # alternate the order: a shared machine's load drifts during the run
        for key, backend, workers in (variants if r % 2 == 0 else variants[::-1]):
            out = ray.get(plain.remote(one, ref)) if backend is None else \
                run_trainer(variant_config(base, backend, workers), ref)
            runs[key].append(out)
            print(f"round {r}: {key} {out}", flush=True)
    for key in runs:  # the median round of each variant
        rates = [x["tokens_per_s"] for x in runs[key]]
        results[key] = {"tokens_per_s": float(np.median(rates)), "tokens_per_s_rounds": rates,
                        "peak_memory_mb_per_worker": max(x["peak_memory_mb_per_worker"] for x in runs[key])}
    from ray_rec.lm.model import build_model

    n_params = sum(p.numel() for p in build_model(one.model, data["tokenizer"]).parameters())
    results["config"]["parameters"] = n_params
    plain_rate = results["plain_1w"]["tokens_per_s"]
    print(f"\nmodel {n_params / 1e6:.2f} M parameters, global batch {args.global_batch}, micro {args.micro}, "
          f"{args.steps} steps")
    print(f"{'variant':<10} {'tokens/s':>10} {'vs plain':>9} {'peak MiB/worker':>16}")
    for key in ("plain_1w", "ddp_1w", "zero2_1w", "ddp_2w", "zero2_2w"):
        r = results[key]
        r["ratio_vs_plain"] = r["tokens_per_s"] / plain_rate
        print(f"{key:<10} {r['tokens_per_s']:>10.0f} {r['ratio_vs_plain']:>9.2f} {r['peak_memory_mb_per_worker']:>16.0f}")
    results["ray_train_overhead_1w"] = {k: 1 - results[k]["ratio_vs_plain"] for k in ("ddp_1w", "zero2_1w")}
    print("Ray Train overhead with 1 worker (goal <= 10%): " + ", ".join(
        f"{k} {v:+.1%}" for k, v in results["ray_train_overhead_1w"].items()))
    write_result("sft_throughput", results)


if __name__ == "__main__":
    main()
