"""Knowledge distillation from our SASRec into the SFT model's SID tokens (``distill.weight > 0``).

SASRec scores every item of the catalogue for the next position of a sequence. A SID model predicts
an item one code at a time, so the teacher's item distribution is turned into one distribution per
SID level, each given the target's true codes before it (the same prefix the student is conditioned
on under teacher forcing)::

    level 0:  q0[c] = sum of p(item) over items whose first code is c
    level l:  ql[c] = sum of p(item) over items sharing the target's first l codes with code c at l,
                      renormalised over those items

At a labelled SID token the loss is then ``(1 - w) * CE(true code) + w * CE(q)``, both over the whole
vocabulary (:func:`ray_rec.train.batch.response_loss`); EOS and text tokens keep the plain loss, and so
does the valid loss (so runs with and without a teacher compare), while the logged train loss includes
the soft term. The teacher only reads the items of the student's own example (the window of a
``sid_seq`` example, the cut history of a ``sid_next`` one), so both see the same context.

Measured (README, ``bench/results/paired_*_distill.md``): w = 0.5 within noise of no teacher on
Scientific and Industrial, w = 0.9 clearly worse on Scientific; so it is off by default.

:func:`code_marginals` is the math; :class:`Teacher` runs SASRec (through the shared
:class:`ray_rec.baseline.scorer.SASRecScorer`) over the examples' item sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ray_rec.baseline.scorer import SASRecScorer
from ray_rec.data.samples import windows
from ray_rec.errors import InputError
from ray_rec.sid.collisions import PAD
from ray_rec.sid.index_io import pad_codes


def code_matrix(codes: dict[int, list[int]], num_items: int) -> np.ndarray:
    """item -> codes as a (num_items, depth) int64 matrix, -1 past an item's SID length and for items
    without a SID (they never get teacher mass at any level)."""
    items = np.fromiter(codes, dtype=np.int64, count=len(codes))
    outside = items[(items < 0) | (items >= num_items)]
    if outside.size:
        raise InputError(f"item {int(outside[0])} has a SID but lies outside the SASRec teacher's catalogue "
                         f"[0, {num_items}); train the teacher on the same items.parquet")
    padded = pad_codes(list(codes.values()))
    out = np.full((num_items, padded.shape[1]), PAD, dtype=np.int64)
    out[items] = padded
    return out


def code_marginals(probs: torch.Tensor, codes: torch.Tensor, targets: torch.Tensor, size: int) -> torch.Tensor:
    """Per-level code distributions of item probabilities, each given the target's true earlier codes.

    probs (M, N) item probabilities; codes (N, depth) int64, -1 = no code at that level; targets (M,)
    item ids -> (M, depth, size); a row is all zeros where the target's SID has no such level, or where
    no item with the target's prefix has any probability.

    >>> p = torch.tensor([[0.5, 0.25, 0.25]])
    >>> c = torch.tensor([[0, 0], [0, 1], [1, 0]])
    >>> code_marginals(p, c, torch.tensor([1]), 2).double().round(decimals=4).tolist()
    [[[0.75, 0.25], [0.6667, 0.3333]]]
    """
    m, depth = probs.shape[0], codes.shape[1]
    true = codes[targets]                                        # (M, depth)
    alive = probs.float()
    out = torch.zeros((m, depth, size), dtype=torch.float32)
    for level in range(depth):
        column = codes[:, level]
        onehot = torch.nn.functional.one_hot(column.clamp(min=0), size).float() * (column >= 0)[:, None].float()
        mass = alive @ onehot                                    # (M, size)
        total = mass.sum(-1, keepdim=True)
        out[:, level] = torch.where(total > 0, mass / total.clamp(min=1e-30), 0.0)
        out[true[:, level] < 0, level] = 0.0
        alive = alive * (column[None, :] == true[:, level:level + 1])
    return out


class Teacher:
    """A trained SASRec (``<run>/baseline/sasrec/model``) that gives soft targets for SID tokens.
    ``batch_size`` sequences are scored at a time (their item probabilities, pieces x max_len x catalogue
    floats, are the memory peak)."""

    def __init__(self, model_dir: str | Path, codes: dict[int, list[int]], temperature: float = 1.0,
                 batch_size: int = 64):
        model_dir = Path(model_dir)
        if not (model_dir / "model.json").is_file():
            raise InputError(f"{model_dir}: no SASRec model to distil from (distill.weight > 0); run "
                             "`ray-rec baseline sasrec` on this run first, or set distill.teacher")
        self.scorer = SASRecScorer(model_dir)
        self.model = self.scorer.model
        self.codes = torch.from_numpy(code_matrix(codes, self.model.num_items))
        self.size = int(self.codes.max()) + 1
        self.temperature, self.batch_size = temperature, batch_size

    def _next_item_probs(self, pieces: list[list[int]]) -> list[torch.Tensor]:
        """Per piece of at most max_len + 1 items: (len - 1, N) probabilities of items 1.. given the
        items before each, within the piece."""
        out = []
        for s in range(0, len(pieces), self.batch_size):
            part = pieces[s:s + self.batch_size]
            probs = self.scorer.position_probs([p[:-1] for p in part], self.temperature)
            out.extend(probs[r, self.model.max_len - (len(p) - 1):] for r, p in enumerate(part))
        return out

    def soft_rows(self, sequences: Sequence[Sequence[int]],
                  n_targets: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each item sequence, the soft targets of its last ``n`` items' SID tokens, in token order:
        (the SID level of each token (r,), distributions (r, size)), r = the sum of their SID lengths.
        Each item is predicted from the items before it in the same sequence (the newest max_len of them)."""
        rows = []
        for s in range(0, len(sequences), self.batch_size):
            rows.extend(self._soft_rows(sequences[s:s + self.batch_size], n_targets[s:s + self.batch_size], s))
        return rows

    def _soft_rows(self, sequences, n_targets, first: int) -> list[tuple[np.ndarray, np.ndarray]]:
        pieces, owner = [], []
        for k, seq in enumerate(sequences):
            if not 1 <= n_targets[k] < len(seq):
                raise ValueError(f"sequence {first + k}: {n_targets[k]} targets need 1..{len(seq) - 1}")
            for piece in windows(seq, self.model.max_len + 1):  # every item after the first once, in order
                pieces.append(list(piece))
                owner.append(k)
        per_seq: list[list[torch.Tensor]] = [[] for _ in sequences]
        for k, p in zip(owner, self._next_item_probs(pieces), strict=True):
            per_seq[k].append(p)
        probs = torch.cat([torch.cat(p)[-n:] for p, n in zip(per_seq, n_targets, strict=True)])
        targets = torch.as_tensor([i for seq, n in zip(sequences, n_targets, strict=True) for i in seq[-n:]])
        q = code_marginals(probs, self.codes, targets, self.size).numpy()  # (targets, depth, size)
        lengths = (self.codes[targets] >= 0).sum(-1).tolist()
        out, j = [], 0
        for n in n_targets:
            levels = np.concatenate([np.arange(lengths[t]) for t in range(j, j + n)])
            out.append((levels, np.concatenate([q[t, :lengths[t]] for t in range(j, j + n)])))
            j += n
        return out
