"""SASRec (Kang & McAuley, 2018): a causal self-attention encoder over a user's item sequence.

The model alone, pure torch. Item ids inside the model are shifted by +1 so that 0 is padding
(artifacts are 0-based); :func:`encode_histories` does the shift and the left padding. Sequences are
left-padded so the newest item is always the last position. The output layer is the item embedding
itself (tied), scored with a full softmax over the catalogue::

    model = SASRec(num_items=3686, max_len=20)
    seq = encode_histories([[3, 17, 5]], max_len=20)      # (1, 20) shifted ids
    scores = model.score(seq)                             # (1, 3687); column 0 is padding
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


def encode_histories(histories: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """0-based item-id lists (oldest first) -> (B, max_len) int64, ids +1, left-padded with 0,
    keeping the newest ``max_len`` items."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, items in enumerate(histories):
        items = np.asarray(items, dtype=np.int64)[-max_len:]
        if items.size:
            out[row, max_len - items.size:] = items + 1
    return torch.from_numpy(out)


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t sees positions <= t that are not padding."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d); allowed: (B, 1, L, L) bool -> (B, L, d)."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads, dropout)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), allowed))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(nn.Module):
    """Self-attentive sequential recommender with a full-softmax output tied to the item embedding."""

    def __init__(self, num_items: int, max_len: int = 50, hidden: int = 64, blocks: int = 2, heads: int = 2,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.hparams = dict(num_items=num_items, max_len=max_len, hidden=hidden, blocks=blocks, heads=heads,
                            dropout=dropout)
        self.num_items = num_items
        self.max_len = max_len
        self.item_emb = nn.Embedding(num_items + 1, hidden, padding_idx=PAD)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: (B, L) shifted ids, 0 = padding, L <= max_len -> hidden states (B, L, d)."""
        length = seq.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
        real = seq != PAD                                                   # (B, L)
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        # Keys that are padding are hidden; each position always sees itself so no row is empty.
        allowed = (causal & real[:, None, :]) | eye                        # (B, L, L)
        positions = torch.arange(self.max_len - length, self.max_len, device=seq.device)
        x = self.item_emb(seq) * self.item_emb.embedding_dim ** 0.5 + self.pos_emb(positions)
        x = self.emb_drop(x) * real[..., None]
        for block in self.blocks:
            x = block(x, allowed[:, None]) * real[..., None]
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (..., d) -> (..., num_items + 1) scores; column 0 is padding."""
        return hidden @ self.item_emb.weight.T

    def loss(self, seq: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the full softmax at every position whose label is not 0.

        seq: (B, L) shifted ids; labels: (B, L) shifted next-item ids, 0 = no target here."""
        hidden = self(seq)
        keep = labels != PAD
        return F.cross_entropy(self.logits(hidden[keep]), labels[keep])

    @torch.no_grad()
    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: (B, L) shifted, left-padded histories -> (B, num_items + 1) next-item scores.
        Column 0 is padding (rank with ``exclude=[0]`` and targets + 1)."""
        return self.logits(self(seq)[:, -1])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: str | Path) -> Path:
        """Write ``model.pt`` (state dict) and ``model.json`` (constructor arguments) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "model.pt")
        (directory / "model.json").write_text(json.dumps(self.hparams, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> SASRec:
        """Rebuild a model saved by :meth:`save` (weights only, never pickled code)."""
        directory = Path(directory)
        model = cls(**json.loads((directory / "model.json").read_text()))
        model.load_state_dict(torch.load(directory / "model.pt", map_location=map_location, weights_only=True))
        return model.eval()
