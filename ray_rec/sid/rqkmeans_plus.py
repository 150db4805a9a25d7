"""RQ-KMeans+: a residual encoder warm-started from balanced RQ-KMeans codebooks.

The encoder is ``z = x + MLP(x)`` and the decoder ``x_hat = z_q + MLP(z_q)``, both MLPs with their
last layer initialised to zero, so before training the model *is* constrained RQ-KMeans: ``z = x``,
the codebooks are the balanced k-means centroids, and the reconstruction is the sum of codes.
Training (the RQ-VAE loss of ``rqvae.py``) then moves the items' latents, the codes and the decoder
together, starting from a balanced, collision-poor solution rather than from random weights. Example::

    quantizer = fit_rqkmeans_plus(x, sizes=[256, 256, 256], hidden_dim=256, epochs=100)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ray_rec.sid.constrained import fit_constrained
from ray_rec.sid.quantize import check_embeddings
from ray_rec.sid.rqvae import NeuralQuantizer, RQModel, train_rq


class ResidualMLP(nn.Module):
    """(B, d) -> (B, d): ``x + W2 relu(W1 x)`` with ``W2 = 0`` at initialisation (the identity)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.inner[2].weight)
        nn.init.zeros_(self.inner[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def fit_rqkmeans_plus(x: np.ndarray, sizes: list[int], hidden_dim: int = 256, seed: int = 0,
                      slack: float = 0.5, n_init: int = 1, max_iter: int = 100, epochs: int = 100, batch_size: int = 512,
                      lr: float = 1e-3, beta: float = 0.25, dead_code_every: int = 10) -> NeuralQuantizer:
    """(n, d) item vectors -> a trained RQ-KMeans+ model with L codebooks of shapes (K_l, d)."""
    x = check_embeddings(x, min_items=max(sizes))
    warm, _ = fit_constrained(x, sizes, seed=seed, slack=slack, n_init=n_init, max_iter=max_iter)
    torch.manual_seed(seed)
    model = RQModel(ResidualMLP(x.shape[1], hidden_dim), ResidualMLP(x.shape[1], hidden_dim),
                    warm.codebooks, beta)
    history = train_rq(model, x, epochs, batch_size, lr, seed, dead_code_every, desc="rqkmeans_plus")
    return NeuralQuantizer(model, dim=x.shape[1], history=history)
