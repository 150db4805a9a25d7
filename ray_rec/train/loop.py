"""The SFT training loop that every Ray Train worker runs (``train_loop_per_worker``).

Reads top to bottom: build or restore the model, wrap it (DeepSpeed ZeRO engine, or DDP), then for
each optimizer step take this rank's slice of the global batch, accumulate gradients over
micro-batches, step with a warm-up + cosine learning rate, and every ``train.eval_every`` steps (or epoch)
measure the valid loss, report metrics with a Hugging Face-format checkpoint and maybe stop early.
The parts GRPO and SASRec share (schedule, backend, checkpoints, best tracking) are the trainer kit,
:mod:`ray_rec.trainer`; the SFT batches and loss are in :mod:`ray_rec.train.batch`.

Data: the driver ships one :class:`ray_rec.train.tasks.Examples` pack through the object store; each
epoch is a seeded permutation, so step ``s`` always sees the same examples and a restored run picks
up exactly where its checkpoint left off. A checkpoint folder holds the HF model and tokenizer
(rank 0), ``trainer_state.json`` (step, best valid loss, loss history, the probe logits), and the
optimizer state (DeepSpeed: one shard per rank under ``deepspeed/``, merged by Ray into one folder;
DDP: ``optimizer.pt``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ray_rec.train.batch import SFTBackend, probe_logits, tokens_per_micro_batch, train_step, valid_loss
from ray_rec.train.config import SFTConfig
from ray_rec.trainer.checkpoint import is_finished, new_state, report_lm_checkpoint, restored
from ray_rec.trainer.progress import Meter, end_evaluation, log, log_evaluation, maybe_crash, worker_nodes
from ray_rec.trainer.schedule import eval_interval, get_lr, is_eval_step, rank_indices, steps_per_epoch, total_steps


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config``: cfg (SFTConfig), data (ObjectRef of a dict with tokenizer,
    train and valid Examples, first_new_id), crash_marker (path or '')."""
    from ray_rec.runtime import setup_env

    setup_env()  # the project's environment, whatever the node's raylet was started with
    import ray
    import ray.train

    from ray_rec.lm.model import add_dropout, build_model, freeze_base
    from ray_rec.runtime import set_threads

    cfg: SFTConfig = loop_config["cfg"]
    set_threads(cfg.resources.threads_per_worker)
    data = ray.get(loop_config["data"])
    tokenizer, train, valid = data["tokenizer"], data["train"], data["valid"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    pad_id = int(tokenizer.pad_token_id)

    # restore or build
    with restored(new_state("best_valid")) as (folder, state):
        if folder:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        else:
            model = build_model(cfg.model, tokenizer, seed=cfg.train.seed)
        add_dropout(model, cfg.model.dropout)
        if cfg.model.freeze_base:
            freeze_base(model, data["first_new_id"])
        backend = SFTBackend(model, cfg, device, tokens_per_micro_batch(train, cfg))
        if folder:
            backend.load_optimizer(folder)
    per_epoch = steps_per_epoch(len(train), cfg.train.global_batch_size)
    total = total_steps(per_epoch, cfg.train.epochs, cfg.train.max_steps)
    if is_finished(state, total):
        return  # a finished run started again: nothing left to do
    state["nodes"] = worker_nodes()
    eval_every = eval_interval(cfg.train.eval_every, per_epoch)
    lengths = np.diff(train.offsets)
    meter, window = Meter(), []
    backend.train(True)
    step = state["step"]
    while step < total:
        maybe_crash(cfg, step, rank, loop_config.get("crash_marker", ""))
        backend.set_lr(get_lr(step, total, cfg.train.lr, cfg.train.warmup_steps, cfg.train.min_lr_ratio))
        mine = rank_indices(step, len(train), cfg, rank, lengths if cfg.train.group_by_length else None)
        t0 = time.perf_counter()
        step_loss, tokens, _ = train_step(backend, train, mine, cfg, pad_id, lengths)
        meter.add(tokens, time.perf_counter() - t0)
        step += 1
        state["train"].append([step, step_loss])
        window.append(step_loss)
        if rank == 0 and step % cfg.train.log_every == 0:
            log(f"[sft] step {step}/{total} loss {np.mean(window):.4f} "
                f"lr {backend.optimizer.param_groups[0]['lr']:.2e} "
                f"~{meter.rate() * world:.0f} tok/s")
            window = []

        if not is_eval_step(step, total, eval_every):
            continue
        loss = valid_loss(backend, valid, cfg, rank, world, pad_id) if len(valid) else float("nan")
        stop = end_evaluation(state, step, "best_valid", loss, higher_is_better=False, patience=cfg.train.patience)
        state["valid"].append([step, loss])
        if rank == 0:
            state["probe"] = probe_logits(backend.module, valid if len(valid) else train)
        rate, peak = meter.reduce(device, world)
        metrics = {"step": step, "epoch": step / per_epoch, "train_loss": state["train"][-1][1],
                   "valid_loss": loss, "best_valid_loss": state["best_valid"], "done": step == total or stop,
                   "tokens_per_s": rate, "peak_memory_mb_per_worker": peak}
        report_lm_checkpoint(backend, tokenizer, state, rank, metrics)
        if rank == 0:
            log_evaluation("sft", step, "valid loss", loss, state["best_valid"], stop)
        if stop:
            break
