"""The SFT training loop that every Ray Train worker runs (``train_loop_per_worker``).

Reads top to bottom: build or restore the model, wrap it (DeepSpeed ZeRO engine, or DDP), then for
each optimizer step take this rank's slice of the global batch, accumulate gradients over
micro-batches, step with a warm-up + cosine learning rate, and every ``train.eval_every`` steps (or epoch)
measure the valid loss, report metrics with a Hugging Face-format checkpoint and maybe stop early.

Data: the driver ships one :class:`ray_rec.train.tasks.Examples` pack through the object store; each
epoch is a seeded permutation, so step ``s`` always sees the same examples and a restored run picks
up exactly where its checkpoint left off. A checkpoint folder holds the HF model and tokenizer
(rank 0), ``trainer_state.json`` (step, best valid loss, loss history), and the optimizer state
(DeepSpeed: one shard per rank under ``deepspeed/``, merged by Ray into one folder; DDP:
``optimizer.pt``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray_rec.train.config import SFTConfig
from ray_rec.train.tasks import IGNORE, Examples

STATE_FILE = "trainer_state.json"


# ---------------------------------------------------------------- small pure helpers

def get_lr(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr * min_ratio`` at ``total``.

    >>> [round(get_lr(s, 10, 1.0, 2, 0.0), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped)."""
    return n_examples // global_batch


def eval_interval(eval_every: int, per_epoch: int) -> int:
    """Optimizer steps between valid-loss evaluations: ``train.eval_every``, or one epoch when it is 0.

    >>> eval_interval(50, 157), eval_interval(0, 157)
    (50, 157)
    """
    return eval_every or max(1, per_epoch)


def epoch_order(n: int, global_batch: int, seed: int, epoch: int, lengths: np.ndarray | None = None,
                group: int = 50) -> np.ndarray:
    """The example order of one epoch, (n,): a seeded permutation, the same on every rank.

    With ``lengths`` (tokens per example) it is grouped by length, as Hugging Face's
    ``group_by_length``: the permutation is cut into runs of ``group`` global batches, each run is
    sorted longest first and cut into batches, and the batches are shuffled. A batch then holds
    examples of similar length, so a padded batch is not as wide as the longest example of a random
    draw (whole user sequences vary from a few tokens to hundreds)."""
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(n)
    if lengths is None:
        return order
    usable = (n // global_batch) * global_batch
    runs = [order[s:min(s + global_batch * group, usable)] for s in range(0, usable, global_batch * group)]
    grouped = np.concatenate([r[np.argsort(-lengths[r], kind="stable")] for r in runs] + [np.zeros(0, np.int64)])
    batches = grouped.reshape(-1, global_batch)[rng.permutation(usable // global_batch)]
    return np.concatenate([batches.ravel(), order[usable:]])


def rank_indices(step: int, n: int, cfg: SFTConfig, rank: int, lengths: np.ndarray | None = None) -> np.ndarray:
    """Example indices (per_worker,) of ``rank`` at optimizer ``step``: every world-th example of the
    step's global batch in :func:`epoch_order` (so ranks get examples of similar length)."""
    g = cfg.train.global_batch_size
    per_epoch = steps_per_epoch(n, g)
    epoch, pos = divmod(step, per_epoch)
    batch = epoch_order(n, g, cfg.train.seed, epoch, lengths)[pos * g:(pos + 1) * g]
    return batch[rank::cfg.scaling.num_workers]


def micro_batches(indices: np.ndarray, micro: int, lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """One rank's examples of an optimizer step cut into micro-batches of ``micro``; with ``lengths``
    they are ordered longest first, so a padded micro-batch is only as wide as its own longest example.

    The step's gradient is the same either way: a micro-batch's summed token loss is divided by a
    fixed count (:func:`tokens_per_micro_batch`), so it does not matter which micro-batch a token is in.

    >>> [m.tolist() for m in micro_batches(np.array([0, 1, 2, 3]), 2, np.array([5, 9, 1, 7]))]
    [[1, 3], [0, 2]]
    """
    if lengths is not None:
        indices = indices[np.argsort(-lengths[indices], kind="stable")]
    return [indices[s:s + micro] for s in range(0, len(indices), micro)]


def collate(examples: Examples, indices, pad_id: int, soft_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Left-pad examples: input_ids, attention_mask, position_ids, labels, each (B, T_max) int64.

    Left padding lines up the ends of the examples, where the responses are: the main task's responses
    (a SID and EOS) then occupy the same few last columns of every row, and :func:`response_loss`
    runs the output head on those columns only. Positions count real tokens from 0, as at generation.

    With ``soft_weight`` > 0 and teacher targets in ``examples`` (:mod:`ray_rec.train.distill`) it adds,
    aligned with the labels: soft_q (B, T, size) = weight x the teacher's code distribution, soft_tokens
    (B, T, size) their token ids, and hard_weight (B, T) = 1 - weight where a soft target is, else 1."""
    rows = [examples.get(int(i)) for i in indices]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    for r, (x, y) in enumerate(rows):
        start = width - len(x)
        ids[r, start:], labels[r, start:], mask[r, start:] = torch.tensor(x), torch.tensor(y), 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}
    if soft_weight > 0 and examples.soft is not None:
        at = torch.full((len(rows), width), -1, dtype=torch.int64)
        for r, i in enumerate(indices):
            s, e = examples.offsets[int(i)], examples.offsets[int(i) + 1]
            at[r, width - (e - s):] = torch.from_numpy(examples.soft_at[s:e].astype(np.int64))
        has, row = at >= 0, at.clamp(min=0).numpy()
        batch["soft_q"] = torch.from_numpy(examples.soft[row]) * (soft_weight * has[..., None])
        batch["soft_tokens"] = torch.from_numpy(examples.level_tokens[examples.soft_level[row]])
        batch["hard_weight"] = torch.where(has, 1.0 - soft_weight, 1.0)
    return batch


def response_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token cross-entropy over labelled positions, their count) of one batch.

    The output head (hidden x vocabulary, the largest matrix of a small model) runs only on the
    columns that predict some row's label, through Hugging Face's ``logits_to_keep``; with left-padded
    main-task batches that is the last few columns instead of all of them (about 2x faster per step on
    a CPU for ~50-token prompts). ``model`` may be the HF model, its DDP wrapper or a DeepSpeed engine.
    A batch with teacher targets (:func:`collate`) mixes them in: per token
    hard_weight x CE(label) + CE(soft_q), both over the whole vocabulary."""
    labels = batch["labels"]
    wanted = (labels[:, 1:] != IGNORE).any(dim=0)           # column t predicts token t + 1
    keep = torch.nonzero(wanted).flatten()
    if keep.numel() == 0:
        keep = torch.tensor([labels.shape[1] - 2], device=labels.device)  # nothing labelled: loss 0
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=keep).logits
    targets = labels[:, keep + 1]
    count = (targets != IGNORE).sum()
    if "soft_q" not in batch:
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss, count
    logp = torch.log_softmax(logits.float(), dim=-1)
    hard = -logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * batch["hard_weight"][:, keep + 1]
    soft = -(batch["soft_q"][:, keep + 1] * logp.gather(-1, batch["soft_tokens"][:, keep + 1])).sum(-1)
    return ((hard + soft) * (targets != IGNORE)).sum(), count


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on trainable matrices except embeddings/head; none on norms, biases, embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        embedding = "embed" in name or "lm_head" in name
        (decay if p.ndim >= 2 and not embedding else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """Training tokens/s of this rank over optimizer steps (forward, backward, step; no eval or
    checkpoint), leaving out the first ``skip`` steps after a (re)start as warm-up."""

    def __init__(self, skip: int = 1):
        self.skip, self.steps, self.tokens, self.seconds = skip, 0, 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.steps += 1
        if self.steps > self.skip:
            self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds

    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    def reduce(self, device: torch.device, world: int) -> tuple[float, float]:
        """(tokens/s summed over ranks, largest peak memory of any rank in MiB): a collective."""
        rate = torch.tensor([self.rate() if self.seconds else 0.0], dtype=torch.float64, device=device)
        peak = torch.tensor([peak_memory_mb(device)], dtype=torch.float64, device=device)
        if world > 1:
            torch.distributed.all_reduce(rate)
            torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
        return float(rate), float(peak)


# ---------------------------------------------------------------- backends

def tokens_per_micro_batch(examples: Examples, cfg: SFTConfig) -> float:
    """Mean labelled tokens of one worker's micro-batch over an epoch: labelled tokens per training
    example times the micro-batch size."""
    labelled = int((examples.labels != IGNORE).sum())
    return max(labelled / max(len(examples), 1) * cfg.train.micro_batch_size, 1.0)


class Backend:
    """One optimizer step = ``forward_backward`` on each micro-batch, then ``step``."""

    def __init__(self, model, cfg: SFTConfig, device: torch.device, tokens_per_micro: float | None = None):
        """``tokens_per_micro``: the divisor of a micro-batch's summed token loss, the mean labelled
        tokens of a micro-batch over the epoch (:func:`tokens_per_micro_batch`), so every labelled
        token weighs the same whatever batch it falls in (with length-grouped batches a per-batch mean
        would weigh a token of a short-sequence batch many times one of a long one). None: per-batch mean."""
        from ray_rec.train.deepspeed_config import deepspeed_config, use_bf16

        self.cfg, self.device, self.kind = cfg, device, cfg.train.backend
        self.tokens_per_micro = tokens_per_micro
        optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr,
                                      betas=(0.9, 0.95))
        self.autocast = use_bf16(cfg) and self.kind == "ddp"
        if self.kind == "deepspeed":
            import deepspeed

            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=model, optimizer=optimizer, config=deepspeed_config(cfg))
            self.module, self.wrapped = self.engine.module, self.engine
        else:
            from torch.nn.parallel import DistributedDataParallel

            model.to(device)
            ddp = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
            self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
                if ddp else model
            self.module, self.optimizer = model, optimizer

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def forward_backward(self, batch: dict[str, torch.Tensor], last: bool) -> float:
        """Backward of a micro-batch's token loss (see :meth:`backward`); returns its mean token loss."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        mean = []

        def loss_of(model) -> torch.Tensor:
            total, count = response_loss(model, batch)
            mean.append(float(total.detach() / count.clamp(min=1)))
            return self._normalise(total, count)

        self.backward(loss_of, last)
        return mean[0]

    def backward(self, loss_of: Callable[[Any], torch.Tensor], last: bool) -> None:
        """Backward of one micro-batch's loss ``loss_of(model)`` (``model``: the DDP wrapper, the
        DeepSpeed engine or the plain module); gradients accumulate, scaled by 1 / grad_accum, and sync
        across ranks only on the ``last`` micro-batch of the step."""
        if self.kind == "deepspeed":
            self.engine.backward(loss_of(self.engine))  # scales by 1 / gradient_accumulation_steps
            self.engine.step()          # a no-op except at the accumulation boundary
        else:
            sync = contextlib.nullcontext() if last or self.wrapped is self.module else self.wrapped.no_sync()
            with sync, torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
                (loss_of(self.wrapped) / self.cfg.grad_accum).backward()

    def _normalise(self, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        return total / (self.tokens_per_micro or count.clamp(min=1))

    def step(self) -> None:
        if self.kind == "deepspeed":
            return  # engine.step() ran at the boundary (clipping included)
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train(self, mode: bool = True) -> None:
        self.wrapped.train(mode)

    def save_optimizer(self, folder: Path, rank: int) -> None:
        if self.kind == "deepspeed":
            self.engine.save_checkpoint(str(folder / "deepspeed"), tag="state")  # every rank: its shard
        elif rank == 0:
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")

    def load_optimizer(self, folder: Path) -> None:
        if self.kind == "deepspeed":
            self.engine.load_checkpoint(str(folder / "deepspeed"), tag="state", load_lr_scheduler_states=False)
        else:
            self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))


def train_step(backend: Backend, examples: Examples, indices: np.ndarray, cfg: SFTConfig, pad_id: int,
               lengths: np.ndarray) -> tuple[float, int, int]:
    """One optimizer step over this rank's ``indices``: cut into micro-batches (longest first when
    ``train.sort_micro_batches``; the token-weighted loss makes the gradient the same), forward and
    backward each, then step. -> (mean micro-batch loss, real tokens, padded positions)."""
    parts = micro_batches(indices, cfg.train.micro_batch_size, lengths if cfg.train.sort_micro_batches else None)
    losses, tokens, positions = [], 0, 0
    for m, part in enumerate(parts):
        batch = collate(examples, part, pad_id, cfg.distill.weight)
        tokens += int(batch["attention_mask"].sum())
        positions += batch["input_ids"].numel()
        losses.append(backend.forward_backward(batch, last=m == len(parts) - 1))
    backend.step()
    return float(np.mean(losses)), tokens, positions


# ---------------------------------------------------------------- evaluation and checkpoints

@torch.no_grad()
def valid_loss(backend: Backend, valid: Examples, cfg: SFTConfig, rank: int, world: int, pad_id: int) -> float:
    """Mean token loss of the valid examples, each rank scoring every world-th one, summed over ranks."""
    backend.train(False)
    total = torch.zeros(2, dtype=torch.float64)
    mine = np.arange(rank, len(valid), world)
    for s in range(0, len(mine), cfg.train.micro_batch_size):
        batch = {k: v.to(backend.device) for k, v in collate(valid, mine[s:s + cfg.train.micro_batch_size],
                                                             pad_id).items()}
        with torch.autocast(backend.device.type, torch.bfloat16, enabled=backend.autocast):
            loss, count = response_loss(backend.wrapped, batch)
        total += torch.stack([loss.double().cpu(), count.double().cpu()])
    if world > 1:
        total = total.to(backend.device)
        torch.distributed.all_reduce(total)
    backend.train(True)
    return float(total[0] / total[1].clamp(min=1))


def save_checkpoint(backend: Backend, tokenizer, state: dict, rank: int) -> tempfile.TemporaryDirectory:
    """Write this rank's part of a checkpoint into a temporary folder (kept alive by the return value)."""
    from ray_rec.lm.checkpoint import save_sft_model

    tmp = tempfile.TemporaryDirectory(prefix="ray_rec_sft_ckpt_")
    folder = Path(tmp.name)
    if rank == 0:
        save_sft_model(backend.module, tokenizer, folder)
        (folder / STATE_FILE).write_text(json.dumps(state) + "\n")
    backend.save_optimizer(folder, rank)
    return tmp


def report_checkpoint(backend: Backend, tokenizer, state: dict, rank: int, metrics: dict[str, Any]) -> None:
    """Save this rank's part of a checkpoint at ``state["step"]`` and report it to Ray Train with
    ``metrics`` (every rank calls it at the same step)."""
    import ray.train

    tmp = save_checkpoint(backend, tokenizer, state, rank)
    with tmp:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp.name),
                         checkpoint_dir_name=f"checkpoint_{state['step']:06d}")


def track_best(state: dict, key: str, value: float, higher_is_better: bool, patience: int) -> bool:
    """Record an evaluation in ``state`` (``state[key]`` the best value so far, ``bad_evals`` the evaluations
    since it improved); True when ``patience`` (> 0) evaluations in a row did not improve it.

    >>> s = {"best": None, "bad_evals": 0}
    >>> [track_best(s, "best", v, higher_is_better=True, patience=2) for v in (0.1, 0.3, 0.2, 0.25)], s["best"]
    ([False, False, False, True], 0.3)
    """
    best = state[key]
    better = best is None or (value > best if higher_is_better else value < best)
    state[key] = value if better else best
    state["bad_evals"] = 0 if better else state["bad_evals"] + 1
    return bool(patience) and state["bad_evals"] >= patience


@torch.no_grad()
def probe_logits(model, examples: Examples) -> list[float]:
    """Next-token logits (V,) after example 0's prompt: lets a reloaded checkpoint prove it is the same model."""
    ids, labels = examples.get(0)
    prompt_len = int(np.argmax(labels != IGNORE)) if (labels != IGNORE).any() else len(ids)
    was_training = model.training
    model.eval()
    logits = model(input_ids=torch.tensor(ids[:prompt_len], dtype=torch.int64)[None].to(model.device)).logits
    model.train(was_training)
    return logits[0, -1].float().cpu().tolist()


def log(text: str) -> None:
    """One progress line (sys.stdout.write: Ray Train's patched print would show it twice)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def maybe_crash(cfg, step: int, rank: int, marker: str) -> None:
    """Fault injection for tests: worker ``crash_rank`` dies at ``crash_at_step``, the first time only.
    ``cfg``: any stage config with a ``train`` section (SFT and RL share it)."""
    if step == cfg.train.crash_at_step and rank == cfg.train.crash_rank and marker and not os.path.exists(marker):
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).write_text(f"worker {rank} exited at step {step}\n")
        # Ray Train registers a reported checkpoint when its controller next polls the workers; dying
        # right after a report could beat that poll, and the restart would then begin from scratch.
        time.sleep(3.0)
        os._exit(1)


# ---------------------------------------------------------------- the loop

def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config``: cfg (SFTConfig), data (ObjectRef of a dict with tokenizer,
    train and valid Examples, first_new_id), crash_marker (path or '')."""
    import ray
    import ray.train

    from ray_rec.lm.model import add_dropout, build_model, freeze_base
    from ray_rec.runtime import set_threads

    cfg: SFTConfig = loop_config["cfg"]
    set_threads(cfg.scaling.threads_per_worker)
    data = ray.get(loop_config["data"])
    tokenizer, train, valid = data["tokenizer"], data["train"], data["valid"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    pad_id = int(tokenizer.pad_token_id)

    # restore or build
    checkpoint = ray.train.get_checkpoint()
    state = {"step": 0, "best_valid": None, "bad_evals": 0, "stopped": False, "train": [], "valid": []}
    with contextlib.ExitStack() as stack:
        restored = Path(stack.enter_context(checkpoint.as_directory())) if checkpoint else None
        if restored:
            from transformers import AutoModelForCausalLM

            state = json.loads((restored / STATE_FILE).read_text())
            state.setdefault("resumed_at", []).append(state["step"])
            model = AutoModelForCausalLM.from_pretrained(restored, dtype=torch.float32)
        else:
            model = build_model(cfg.model, tokenizer, seed=cfg.train.seed)
        add_dropout(model, cfg.model.dropout)
        if cfg.model.freeze_base:
            freeze_base(model, data["first_new_id"])
        backend = Backend(model, cfg, device, tokens_per_micro_batch(train, cfg))
        if restored:
            backend.load_optimizer(restored)
    per_epoch = steps_per_epoch(len(train), cfg.train.global_batch_size)
    total = math.ceil(cfg.train.epochs * per_epoch)
    total = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
    if state["stopped"] or state["step"] >= total:
        return  # a finished run started again: nothing left to do
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

        last = step == total
        if step % eval_every and not last:
            continue
        loss = valid_loss(backend, valid, cfg, rank, world, pad_id) if len(valid) else float("nan")
        stop = track_best(state, "best_valid", loss, higher_is_better=False, patience=cfg.train.patience)
        state["valid"].append([step, loss])
        state["step"], state["stopped"] = step, stop
        if rank == 0:
            state["probe"] = probe_logits(backend.module, valid if len(valid) else train)
        rate, peak = meter.reduce(device, world)
        metrics = {"step": step, "epoch": step / per_epoch, "train_loss": state["train"][-1][1],
                   "valid_loss": loss, "best_valid_loss": state["best_valid"], "done": last or stop,
                   "tokens_per_s": rate, "peak_memory_mb_per_worker": peak}
        report_checkpoint(backend, tokenizer, state, rank, metrics)
        if rank == 0:
            log(f"[sft] step {step}: valid loss {loss:.4f} (best {state['best_valid']:.4f})"
                + (" - stopping early" if stop else ""))
        if stop:
            break
