"""The optimizer side of a Ray Train worker, the same for SFT and GRPO: a :class:`Backend` wraps the
model in a DeepSpeed ZeRO engine (config from :mod:`ray_rec.trainer.deepspeed_config`) or in torch
DDP, owns the AdamW optimizer, and runs one optimizer step as ``backward`` on each micro-batch's loss
followed by ``step``. What the loss is stays with the stage (SFT: ``ray_rec.train.batch``; GRPO:
``ray_rec.rl.loop``): it hands ``backward`` a function of the (wrapped) model.

Resuming never unpickles code: DeepSpeed's own checkpoint engine loads its files with
``torch.load(weights_only=False)``, so anyone who can write to the run's storage could run code in the
workers; its ``load`` is replaced by :func:`weights_only_load`, which admits tensors, plain
containers and the three small DeepSpeed classes its ZeRO-2 files hold, and refuses anything else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


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


class Backend:
    """One optimizer step = :meth:`backward` on each micro-batch, then :meth:`step`.

    ``cfg``: any stage config with ``train`` and ``resources`` sections and ``grad_accum``. Attributes:
    ``module`` the plain model, ``wrapped`` what the forward pass runs on (the DeepSpeed engine, the DDP
    wrapper, or the module itself on one worker), ``optimizer``, ``device``, ``autocast`` (bf16 under DDP)."""

    def __init__(self, model, cfg, device: torch.device):
        from ray_rec.trainer.deepspeed_config import deepspeed_config, use_bf16

        self.cfg, self.device, self.kind = cfg, device, cfg.train.backend
        optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr,
                                      betas=(0.9, 0.95))
        self.autocast = use_bf16(cfg) and self.kind == "ddp"  # DeepSpeed casts by its own bf16 setting
        if self.kind == "deepspeed":
            import deepspeed

            self.engine, self.optimizer, _, _ = deepspeed.initialize(
                model=model, optimizer=optimizer, config=deepspeed_config(cfg))
            self.engine.checkpoint_engine.load = weights_only_load  # saving stays DeepSpeed's own
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

    def step(self) -> None:
        """End the optimizer step: clip and step (DDP); DeepSpeed already did both in its last ``backward``."""
        if self.kind == "deepspeed":
            return  # engine.step() ran at the boundary (clipping included)
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train(self, mode: bool = True) -> None:
        self.wrapped.train(mode)

    def save_optimizer(self, folder: Path, rank: int) -> None:
        """Optimizer state into a checkpoint folder: DeepSpeed, one shard per rank under ``deepspeed/``
        (Ray merges the ranks' folders into one); DDP, rank 0's ``optimizer.pt``."""
        if self.kind == "deepspeed":
            self.engine.save_checkpoint(str(folder / "deepspeed"), tag="state")  # every rank: its shard
        elif rank == 0:
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")

    def load_optimizer(self, folder: Path) -> None:
        if self.kind == "deepspeed":
            self.engine.load_checkpoint(str(folder / "deepspeed"), tag="state", load_lr_scheduler_states=False)
        else:
            self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))


def deepspeed_safe_globals() -> list[Any]:
    """The classes besides tensors and plain containers that DeepSpeed's ZeRO-2 checkpoint files hold
    (found by loading them with ``weights_only=True``): the loss scaler, the ZeRO stage enum, the
    fragment addresses of flattened parameters."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def weights_only_load(path: str, map_location=None):
    """DeepSpeed's checkpoint-engine ``load``, with ``weights_only=True`` (module docstring)."""
    import pickle

    from ray_rec.errors import InputError

    with torch.serialization.safe_globals(deepspeed_safe_globals()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise InputError(f"{path}: refused to load a checkpoint file that holds more than tensors and plain "
                             f"data ({last[:200]}); it was not written by this trainer, or was altered in "
                             "storage") from None
