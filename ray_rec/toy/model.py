"""The toy next-item model: item embedding -> masked pooling -> linear layer over all items.

    logits = W · pool(E[history]) + b,   shape (B, V) with V = num_items + 1 (column 0 = padding)

Padding positions never contribute to the pooled vector; the padding column is excluded when
ranking (``ray_rec.metrics.ranks_from_scores(..., exclude=[0])``).
"""

from __future__ import annotations

import torch
from torch import nn

from ray_rec.toy.config import ToyModelConfig


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real positions: x (B, L, D), mask (B, L) bool -> (B, D); an empty row gives zeros."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def last_position(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Vector at the last real position of right-padded rows: x (B, L, D), mask (B, L) -> (B, D)."""
    last = (mask.sum(dim=1) - 1).clamp(min=0)
    return x[torch.arange(x.shape[0], device=x.device), last]


POOLING = {"mean": masked_mean, "last": last_position}


class ToyRec(nn.Module):
    """Embedding + pooling + linear scorer over the whole catalogue."""

    def __init__(self, num_items: int, cfg: ToyModelConfig) -> None:
        super().__init__()
        self.num_items = num_items
        self.pool = POOLING[cfg.pooling]
        self.embed = nn.Embedding(num_items + 1, cfg.embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.embed_dim, num_items + 1)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L) int64, mask (B, L) bool -> logits (B, num_items + 1)."""
        h = self.pool(self.embed(input_ids), mask)
        return self.out(self.dropout(h))
