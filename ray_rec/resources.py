"""Resources: where a stage's work runs, under the same four keys in every stage config.

``resources.workers`` are Ray Train workers for the training stages (sft, rl, sasrec, toy) and Ray
actors for the inference stages (embed, evaluate); ``cpus_per_worker`` is what Ray reserves for
each, ``threads_per_worker`` the torch threads each uses, and ``use_gpu`` gives each one GPU (NCCL
and bf16 for training, CUDA for inference). They decide where and how fast a stage runs, not what it
computes (the global batch stays the same; only float rounding and per-worker random streams can
differ), so none enters a stage's fingerprint (:mod:`ray_rec.stage`)::

    ray-rec sft --set resources.workers=8 --set resources.use_gpu=true
    ray-rec evaluate --set resources.workers=4
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_rec.config import ConfigError, option


@dataclass(frozen=True)
class Resources:
    """Ray workers (or actors) of a stage and what each one gets."""

    workers: int = option(2, affects_result=False, help="Ray Train workers (training) or Ray actors (inference)")
    cpus_per_worker: float = option(1.0, affects_result=False, help="logical CPUs Ray reserves per worker")
    threads_per_worker: int = option(1, affects_result=False,
                                     help="torch threads per worker (1 avoids thrashing on small machines)")
    use_gpu: bool = option(False, affects_result=False,
                           help="one GPU per worker (NCCL and bf16 under precision=auto for training, CUDA for "
                                "inference); false = CPU")

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1 or self.cpus_per_worker <= 0:
            raise ConfigError("resources.workers, resources.threads_per_worker and resources.cpus_per_worker "
                              f"must be positive, got {self.workers}, {self.threads_per_worker}, "
                              f"{self.cpus_per_worker}")

    @property
    def device(self) -> str:
        """``cuda`` when each worker has a GPU, else ``cpu``."""
        return "cuda" if self.use_gpu else "cpu"
