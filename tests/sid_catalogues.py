"""Hypothesis strategies of random SID catalogues, shared by the trie and beam-search property tests."""

from __future__ import annotations

from hypothesis import strategies as st


def with_dedup_level(base: list[list[int]]) -> list[list[int]]:
    """What a de-duplicating quantizer emits: colliding SIDs get one more level 0..g-1, the rest keep L."""
    seen: dict[tuple[int, ...], int] = {}
    groups = {tuple(c): base.count(c) for c in base}
    out = []
    for c in base:
        k = seen[tuple(c)] = seen.get(tuple(c), -1) + 1
        out.append(c + [k] if groups[tuple(c)] > 1 else c)
    return out


def catalogues(max_items: int) -> st.SearchStrategy[list[list[int]]]:
    """Random lengths (SIDs that prefix other SIDs, collisions) or 3 levels plus a de-duplication level."""
    any_length = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=4), min_size=1, max_size=max_items)
    three_levels = st.lists(st.lists(st.integers(0, 2), min_size=3, max_size=3), min_size=1, max_size=max_items)
    return any_length | three_levels.map(with_dedup_level)
