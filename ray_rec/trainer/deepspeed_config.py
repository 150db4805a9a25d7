"""The DeepSpeed config dict, built by one pure function from a Ray Train stage config (no DeepSpeed
import here); :class:`ray_rec.trainer.backend.Backend` hands it to ``deepspeed.initialize``.

On a GPU (``resources.use_gpu``) precision ``auto`` means bf16 and communication overlaps compute; on a
CPU it means fp32 (DeepSpeed then runs its collectives over gloo). The optimizer is passed to
``deepspeed.initialize`` as a torch AdamW, so the dict names none (``zero_allow_untested_optimizer``).

    >>> from ray_rec.train.config import SFTConfig
    >>> ds = deepspeed_config(SFTConfig())
    >>> ds["train_batch_size"], ds["gradient_accumulation_steps"], ds["zero_optimization"]["stage"], ds["bf16"]
    (64, 2, 2, {'enabled': False})
"""

from __future__ import annotations

from typing import Any


def use_bf16(cfg) -> bool:
    """bf16 when asked for, or under ``auto`` on a GPU; fp32 otherwise."""
    return cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and cfg.resources.use_gpu)


def deepspeed_config(cfg) -> dict[str, Any]:
    """ZeRO config for ``cfg.resources.workers`` ranks: batch sizes, precision, clipping, sharding.
    ``cfg``: any stage config with ``train`` and ``resources`` sections and ``grad_accum`` (SFT, GRPO)."""
    gpu = cfg.resources.use_gpu
    # contiguous_gradients keeps a reduce buffer of this many elements per rank: 5e8 is 2 GB of fp32, too
    # much for CPU workers sharing a small machine
    bucket = int(5e8) if gpu else int(5e7)
    return {
        "train_batch_size": cfg.train.global_batch_size,
        "train_micro_batch_size_per_gpu": cfg.train.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.train.grad_clip,
        "bf16": {"enabled": use_bf16(cfg)},
        "fp16": {"enabled": False},
        "zero_optimization": {
            "stage": cfg.train.zero_stage,
            "overlap_comm": gpu,
            "contiguous_gradients": True,
            "reduce_scatter": True,
            "reduce_bucket_size": bucket,
            "allgather_bucket_size": bucket,
        },
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # progress lines are ours (trainer/progress.py)
        "wall_clock_breakdown": False,
    }
