"""Pure numpy/Arrow building blocks shared by every source: item text, chronological sequences,
sliding-window samples and the two split protocols.

* :func:`sequence_order` sorts interactions per user, oldest first (ties keep input order).
* :func:`sliding_samples` turns sorted interactions into one sample per interaction after a user's
  first: history = the previous <= N items, target = the item.
* :func:`split_ratio` sorts all samples by target time (stable) and cuts 8:1:1 (MiniOneRec);
  :func:`split_leave_one_out` gives each user's last sample to test, second last to valid.
* :func:`user_sequences` goes back from samples to whole sequences and :func:`windows` cuts those into
  pieces a model reads in one pass (SASRec's every-position loss, SFT's ``sid_seq`` task), so that
  every target is trained on exactly once even when sample histories are capped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ray_rec import schema


def render_text(title: str | None, description: str | None, brand: str | None,
                categories: list[str] | None, template: str, max_chars: int) -> str:
    """Fill ``template`` with an item's fields, each cut to ``max_chars`` characters."""
    def cut(value: str | None) -> str:
        return (value or "").strip()[:max_chars]
    text = template.format(title=cut(title), description=cut(description), brand=cut(brand),
                           categories=cut(", ".join(categories or [])))
    return " ".join(text.split())


def with_text(items: pa.Table, template: str, max_chars: int) -> pa.Table:
    """``items`` with the ``text`` column (re)computed from the template; cast to schema.ITEMS."""
    cols = {name: items.column(name).to_pylist() for name in ("title", "description", "brand", "categories")}
    texts = [render_text(t, d, b, c, template, max_chars)
             for t, d, b, c in zip(cols["title"], cols["description"], cols["brand"], cols["categories"], strict=False)]
    items = items.drop_columns([c for c in ("text",) if c in items.column_names])
    return items.append_column("text", pa.array(texts, pa.string())).select(schema.ITEMS.names).cast(schema.ITEMS)


def sequence_order(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Permutation that sorts interactions by (user, time), ties kept in input order. (n,) -> (n,)"""
    return np.lexsort((np.arange(len(user)), time, user))


def sliding_samples(user: np.ndarray, item: np.ndarray, time: np.ndarray, max_history: int) -> dict:
    """One sample per interaction that has a predecessor of the same user.

    Inputs are (n,) arrays sorted by :func:`sequence_order`. Returns a dict of arrays over the
    m samples: ``user`` (m,), ``target`` (m,), ``time`` (m,) target times, ``pos`` (m,) position of
    the target in its user's sequence, ``remaining`` (m,) interactions after it, and ``history``
    as Arrow ``list<int64>`` of the previous <= ``max_history`` items, oldest first.
    """
    n = len(user)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    starts = np.flatnonzero(new_user)
    seg = np.cumsum(new_user) - 1
    pos = np.arange(n) - starts[seg]
    ends = np.append(starts[1:], n)
    remaining = ends[seg] - np.arange(n) - 1
    keep = np.flatnonzero(pos >= 1)
    lengths = np.minimum(pos[keep], max_history)
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # index of each history element: target index - length + (0 .. length-1)
    first = np.repeat(keep - lengths, lengths)
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    values = item[first + within].astype(np.int64)
    history = pa.ListArray.from_arrays(pa.array(offsets, pa.int32() if offsets[-1] < 2**31 else pa.int64()),
                                       pa.array(values, pa.int64()))
    return {"user": user[keep].astype(np.int64), "target": item[keep].astype(np.int64),
            "time": time[keep], "pos": pos[keep], "remaining": remaining[keep],
            "history": history.cast(pa.list_(pa.int64()))}


def _table(samples: dict, index: np.ndarray) -> pa.Table:
    return pa.table({
        "user_id": pa.array(samples["user"][index], pa.int64()),
        "history": samples["history"].take(pa.array(index, pa.int64())),
        "target": pa.array(samples["target"][index], pa.int64()),
    }, schema=schema.SAMPLES)


def split_ratio(samples: dict, ratios: tuple[float, float] = (0.8, 0.9)) -> dict[str, pa.Table]:
    """All samples sorted by target time (stable: user order, then position) and cut at
    ``int(m * 0.8)`` and ``int(m * 0.9)``, as MiniOneRec does."""
    order = np.argsort(samples["time"], kind="stable")
    m = len(order)
    a, b = int(m * ratios[0]), int(m * ratios[1])
    return {"train": _table(samples, order[:a]), "valid": _table(samples, order[a:b]),
            "test": _table(samples, order[b:])}


def split_leave_one_out(samples: dict) -> dict[str, pa.Table]:
    """Per user: the last sample is test, the second last valid, the rest train (user order)."""
    rem = samples["remaining"]
    return {"train": _table(samples, np.flatnonzero(rem >= 2)),
            "valid": _table(samples, np.flatnonzero(rem == 1)),
            "test": _table(samples, np.flatnonzero(rem == 0))}


def build_splits(interactions: pa.Table, max_history: int, split: str) -> dict[str, pa.Table]:
    """Interactions (schema.INTERACTIONS) -> samples per split, by ``split`` ('ratio' or 'leave_one_out')."""
    user = interactions.column("user_id").to_numpy()
    item = interactions.column("item_id").to_numpy()
    time = interactions.column("timestamp").to_numpy()
    order = sequence_order(user, time)
    samples = sliding_samples(user[order], item[order], time[order], max_history)
    if split == "ratio":
        return split_ratio(samples)
    if split == "leave_one_out":
        return split_leave_one_out(samples)
    raise ValueError(f"unknown split {split!r}; valid: ratio, leave_one_out")


def interactions_table(user, item, time) -> pa.Table:
    """Arrays -> a table with schema.INTERACTIONS."""
    return pa.table({"user_id": pa.array(np.asarray(user, dtype=np.int64)),
                     "item_id": pa.array(np.asarray(item, dtype=np.int64)),
                     "timestamp": pa.array(np.asarray(time, dtype=np.int64))}, schema=schema.INTERACTIONS)


def user_sequences(users: Sequence[int], histories: Sequence[Sequence[int]],
                   targets: Sequence[int]) -> list[list[int]]:
    """Rebuild each user's item sequence from sliding-window samples (history + target).

    A sample whose sequence is a prefix of another of the same user's is dropped; windows that slide
    by one item (``B[:-1] == A[1:]``, what a capped history gives) are chained. Users keep the order
    they first appear in; samples that chain to nothing stay sequences of their own.
    """
    by_user: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for u, h, t in zip(users, histories, targets, strict=True):
        by_user[u].append((*h, t))
    out = []
    for seqs in by_user.values():
        kept, prefixes = [], set()
        for s in sorted(set(seqs), key=len, reverse=True):
            if s not in prefixes:
                kept.append(s)
                prefixes.update(s[:k] for k in range(1, len(s) + 1))
        tails = {s[1:]: s for s in kept}
        succ = {tails[s[:-1]]: s for s in kept if s[:-1] in tails and tails[s[:-1]] != s}
        has_pred = set(succ.values())
        for start in [s for s in kept if s not in has_pred] or kept[:1]:
            seq, node, seen = list(start), start, {start}
            while node in succ and succ[node] not in seen:
                node = succ[node]
                seen.add(node)
                seq.append(node[-1])
            out.append(seq)
    return out


def windows(seq: Sequence[int], size: int) -> list[list[int]]:
    """Pieces of at most ``size`` items overlapping by one, aligned to the end of ``seq``, so every
    item but the first is a target exactly once and the newest items get the longest context.

    >>> windows([1, 2, 3, 4, 5, 6], 3)
    [[1, 2], [2, 3, 4], [4, 5, 6]]
    """
    if size < 2:
        raise ValueError(f"a window needs at least 2 items (an input and a target), got size={size}")
    out, end = [], len(seq)
    while True:
        start = max(0, end - size)
        out.append(list(seq[start:end]))
        if start == 0:
            return out[::-1]
        end = start + 1
