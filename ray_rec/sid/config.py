"""The semantic-ID stage's one config: which quantizer, its sizes, its training, collision handling.

``ray-rec sid build`` reads it (``jobs/configs/sid.yaml``); cross-field rules are checked here so a
bad combination fails before Ray starts::

    cfg = load_config(SIDConfig, "jobs/configs/sid.yaml", ["method=rqvae", "codebook_size=[256,256,256]"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.paths import DEFAULT_RUN
from ray_rec.resources import Resources

Method = Literal["rqkmeans", "rqkmeans_constrained", "rqvae", "rqkmeans_plus"]
METHODS: tuple[str, ...] = ("rqkmeans", "rqkmeans_constrained", "rqvae", "rqkmeans_plus")
# Methods trained by gradient descent (an encoder, codebooks and a decoder).
NEURAL_METHODS: tuple[str, ...] = ("rqvae", "rqkmeans_plus")


@dataclass(frozen=True)
class SIDConfig:
    """One quantizer fit and the items it assigns: <run>/embeddings -> <run>/sid/<name>/."""

    run: str = option(DEFAULT_RUN, affects_result=False, help="run folder: reads embeddings/embeddings.parquet, writes sid/<name>/")
    method: Method = option("rqkmeans_constrained", help="rqkmeans | rqkmeans_constrained | rqvae | rqkmeans_plus")
    name: str = option("", help="output folder under <run>/sid/ (empty = the method name)")
    embeddings: str = option("", help="embeddings Parquet to read (empty = <run>/embeddings/embeddings.parquet)")
    levels: int = option(3, help="code levels before any de-duplication level (MiniOneRec: 3)")
    codebook_size: int | list[int] = option(256, help="codes per level: one int for every level, or a list of `levels` ints")
    seed: int = option(0, help="seed of k-means, sampling and network initialisation (same seed -> same codes)")
    kmeans_iters: int = option(30, help="Lloyd iterations of each faiss k-means (rqkmeans, and the k-means initialisation of rqvae)")
    fit_items: int = option(0, help="fit on a random sample of this many items and assign the rest by nearest code (0 = fit on all)")
    # balanced k-means
    balance_slack: float = option(0.5, help="constrained: cluster sizes lie in [(1-s)*n/K, (1+s)*n/K]; 0 = exactly equal")
    constrained_init: int = option(1, help="constrained: k-means-constrained restarts (n_init) per level; more is slower")
    constrained_iters: int = option(100, help="constrained: most Lloyd iterations per level (each solves a min-cost flow, ~0.1-0.3 s)")
    # collision handling
    sinkhorn: bool | None = option(None, help="re-assign the last level of colliding items by a balanced (Sinkhorn) plan; null = on for rqvae/rqkmeans_plus")
    sinkhorn_epsilon: float = option(0.05, help="Sinkhorn entropic regularisation, relative to the median cost")
    sinkhorn_iters: int = option(100, help="Sinkhorn scaling iterations")
    dedup: bool = option(True, help="append one de-duplication level to items whose SID still collides (codes 0..g-1 in a group of g)")
    # neural quantizers (rqvae, rqkmeans_plus)
    hidden_dims: list[int] = option([512, 256], help="rqvae: MLP encoder hidden sizes (the decoder mirrors them)")
    latent_dim: int = option(64, help="rqvae: latent size quantized by the codebooks")
    plus_hidden_dim: int = option(256, help="rqkmeans_plus: hidden size of the residual MLPs (z = x + MLP(x))")
    epochs: int = option(100, help="rqvae/rqkmeans_plus: passes over the items")
    batch_size: int = option(512, help="rqvae/rqkmeans_plus: items per optimizer step")
    lr: float = option(1e-3, help="rqvae/rqkmeans_plus: Adam learning rate")
    beta: float = option(0.25, help="rqvae/rqkmeans_plus: commitment loss weight")
    dead_code_every: int = option(10, help="rqvae/rqkmeans_plus: reset unused codes to random residuals every N epochs (0 = never)")
    # orchestration
    assign_chunk: int = option(50_000, affects_result=False, help="items per Ray assignment task (a large catalogue is split across tasks)")
    resources: Resources = option(Resources(), affects_result=False,
                                  help="each fit and each assignment chunk is one Ray task with cpus_per_worker CPUs "
                                       "and threads_per_worker torch/faiss threads (workers and use_gpu are not used)")
    num_cpus: int = option(0, affects_result=False, help="CPUs for a local Ray (0 = all); ignored when connecting to a cluster")

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 9:
            raise ConfigError(f"levels must lie in 1..9 (one token letter a..i each, j is kept for de-duplication), got {self.levels}")
        sizes = self.codebook_size if isinstance(self.codebook_size, list) else [self.codebook_size]
        if isinstance(self.codebook_size, list) and len(sizes) != self.levels:
            raise ConfigError(f"codebook_size lists {len(sizes)} sizes but levels={self.levels}; give one int or {self.levels} ints")
        if any(k < 2 for k in sizes):
            raise ConfigError(f"every codebook_size must be >= 2, got {self.codebook_size}")
        if not 0 <= self.balance_slack < 1:
            raise ConfigError(f"balance_slack must lie in [0, 1), got {self.balance_slack}")
        for key in ("kmeans_iters", "epochs", "batch_size", "latent_dim", "plus_hidden_dim", "assign_chunk",
                    "constrained_init", "constrained_iters", "sinkhorn_iters"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.fit_items < 0 or self.num_cpus < 0 or self.dead_code_every < 0:
            raise ConfigError("fit_items, num_cpus and dead_code_every must be >= 0")
        if self.lr <= 0 or self.beta < 0 or self.sinkhorn_epsilon <= 0:
            raise ConfigError("lr and sinkhorn_epsilon must be > 0 and beta >= 0")
        if any(h < 1 for h in self.hidden_dims):
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"name {self.name!r} must be a plain folder name (no '/', not hidden)")

    @property
    def sizes(self) -> list[int]:
        """Codes per level, one int per level."""
        if isinstance(self.codebook_size, list):
            return list(self.codebook_size)
        return [self.codebook_size] * self.levels

    @property
    def out_name(self) -> str:
        """Folder under <run>/sid/ (``name`` or the method)."""
        return self.name or self.method

    @property
    def use_sinkhorn(self) -> bool:
        """Whether the last level of colliding items is re-assigned by a balanced plan."""
        return self.method in NEURAL_METHODS if self.sinkhorn is None else self.sinkhorn
