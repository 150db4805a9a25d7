"""Toy data: a learnable sequence generator, JSONL reading/writing, leave-one-out splits, collation.

Item ids are 1..num_items; 0 is padding. A user sequence ``s`` of length L >= 3 gives

    train: (s[:t], s[t]) for t = 1 .. L-3      valid: (s[:L-2], s[L-2])      test: (s[:L-1], s[L-1])

(L == 2 gives one train sample, L == 1 none). Histories keep their last ``max_len`` items.

The built-in generator splits the catalogue into groups of ``group_size`` consecutive ids; each user
browses one group (popular groups more often), usually stepping to the successor of the last item,
sometimes jumping inside the group, rarely anywhere. Mean pooling can learn the group, last pooling
the successor, and a most-popular baseline cannot do either.

Write a file with ``ray-rec toy data --out users.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ray_rec.errors import InputError, at
from ray_rec.io import atomic_path
from ray_rec.toy.config import ToyDataConfig


def make_toy_sequences(cfg: ToyDataConfig, seed: int = 0, n: int | None = None) -> list[list[int]]:
    """``n`` (default ``cfg.num_users``) sequences; sequence i belongs to user ``i % num_users``."""
    rng = np.random.default_rng(seed)
    n = cfg.num_users if n is None else n
    num_groups = max(1, cfg.num_items // cfg.group_size)
    # Zipf-like group popularity so that "most popular" is a real (but weak) baseline.
    weights = 1.0 / np.arange(1, num_groups + 1) ** 0.8
    user_group = rng.choice(num_groups, size=cfg.num_users, p=weights / weights.sum())
    seqs = []
    for i in range(n):
        g = user_group[i % cfg.num_users]
        lo_id, size = g * cfg.group_size, cfg.group_size
        length = int(rng.integers(cfg.min_seq_len, cfg.max_seq_len + 1))
        cur = lo_id + int(rng.integers(size))  # 0-based item index
        seq = [cur]
        for _ in range(length - 1):
            u = rng.random()
            if u < cfg.follow_prob:
                cur = lo_id + (cur - lo_id + 1) % size
            elif u < cfg.follow_prob + cfg.noise_prob:
                cur = int(rng.integers(cfg.num_items))
            else:
                cur = lo_id + int(rng.integers(size))
            seq.append(cur)
        seqs.append([c + 1 for c in seq])  # shift: 0 is padding
    return seqs


def write_jsonl(seqs: list[list[int]], path: str | Path, num_users: int | None = None) -> Path:
    """Write one ``{"user_id": u, "items": [...]}`` line per sequence, atomically."""
    num_users = num_users or len(seqs)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for i, seq in enumerate(seqs):
            fh.write(json.dumps({"user_id": i % num_users, "items": [int(x) for x in seq]}) + "\n")
    return Path(path)


def read_jsonl(path: str | Path, num_items: int) -> list[list[int]]:
    """Read user sequences; every problem names the file and line.

    Each non-blank line is ``{"items": [ids...]}`` (other keys such as ``user_id`` are kept out)
    or a bare list of ids; ids must be integers in 1..num_items and a sequence must not be empty.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: JSONL file does not exist")
    seqs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            seqs.append(_parse_line(line, path, lineno, num_items))
    if not seqs:
        raise InputError(f"{path}: no user sequences (the file is empty)")
    return seqs


def _parse_line(line: str, path: Path, lineno: int, num_items: int) -> list[int]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{at(path, lineno)} not valid JSON ({exc.msg} at column {exc.colno})") from None
    items = obj.get("items") if isinstance(obj, dict) else obj
    if isinstance(obj, dict) and "items" not in obj:
        raise InputError(f"{at(path, lineno)} missing key 'items' (expected {{\"items\": [ids...]}})")
    if not isinstance(items, list):
        raise InputError(f"{at(path, lineno, 'items')} expected a list of item ids, got {type(items).__name__}")
    if not items:
        raise InputError(f"{at(path, lineno, 'items')} empty sequence; every user needs at least one item")
    for pos, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int):
            raise InputError(f"{at(path, lineno, 'items')} item {pos} is {x!r}, not an integer id")
        if not 1 <= x <= num_items:
            raise InputError(f"{at(path, lineno, 'items')} item id {x} outside 1..{num_items} "
                             f"(0 is padding; raise --num-items if the catalogue is larger)")
    return items


def load_sequences(cfg: ToyDataConfig, seed: int = 0) -> list[list[int]]:
    """The configured sequences: generated (dataset=toy) or read from ``train_path`` (dataset=jsonl)."""
    if cfg.dataset == "jsonl":
        return read_jsonl(cfg.train_path, cfg.num_items)
    return make_toy_sequences(cfg, seed=seed)


def collate(histories: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad histories (keeping the last ``max_len`` items) -> input_ids (B, max_len) int64 with 0
    as padding, and mask (B, max_len) bool, true on real items."""
    ids = torch.zeros(len(histories), max_len, dtype=torch.long)
    for i, h in enumerate(histories):
        h = h[-max_len:]
        if h:
            ids[i, : len(h)] = torch.as_tensor(h, dtype=torch.long)
    return ids, ids != 0


@dataclass(frozen=True)
class Split:
    """Collated samples: input_ids (N, L), mask (N, L), labels (N,) next item in 1..V-1."""

    input_ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.input_ids[index], self.mask[index], self.labels[index]


def _split(pairs: list[tuple[list[int], int]], max_len: int) -> Split:
    ids, mask = collate([h for h, _ in pairs], max_len)
    labels = torch.as_tensor([t for _, t in pairs], dtype=torch.long)
    return Split(ids, mask, labels)


def leave_one_out(seqs: list[list[int]], max_len: int) -> dict[str, Split]:
    """Train/valid/test splits as in the module docstring."""
    pairs: dict[str, list[tuple[list[int], int]]] = {"train": [], "valid": [], "test": []}
    for s in seqs:  # each history cut to its newest max_len items here: memory linear in sequence length
        n_train = len(s) - 2 if len(s) >= 3 else len(s)
        pairs["train"].extend((s[max(0, t - max_len):t], s[t]) for t in range(1, n_train))
        if len(s) >= 3:
            n = len(s)
            pairs["valid"].append((s[max(0, n - 2 - max_len):n - 2], s[-2]))
            pairs["test"].append((s[max(0, n - 1 - max_len):n - 1], s[-1]))
    if not pairs["train"] or not pairs["valid"]:
        raise InputError("the sequences give no train or no validation samples; users need at least 3 items")
    return {name: _split(p, max_len) for name, p in pairs.items()}


def train_item_counts(seqs: list[list[int]], num_items: int) -> np.ndarray:
    """(V,) interactions per item in the training part of the sequences (all but the valid and test
    targets); index 0 (padding) stays 0. The most-popular baseline ranks items by these counts."""
    counts = np.zeros(num_items + 1, dtype=np.int64)
    for s in seqs:
        part = s[:-2] if len(s) >= 3 else s
        np.add.at(counts, np.asarray(part, dtype=np.int64), 1)
    counts[0] = 0
    return counts
