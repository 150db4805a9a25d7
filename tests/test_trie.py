"""The SID trie allows exactly the valid continuations, batched over beams, and maps SIDs back to items."""

from __future__ import annotations

import numpy as np
import pytest
import sid_catalogues
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ray_rec.errors import InputError
from ray_rec.sid.trie import SIDTrie, sid_token_table

EOS = 0
# level l code c -> token 1 + 16 * l + c (codes < 16, up to 4 levels); a vocab of 80 leaves unused ids
TOKENS = [[1 + 16 * level + c for c in range(16)] for level in range(4)]
VOCAB = 80


def tok(seq):
    return tuple(TOKENS[level][c] for level, c in enumerate(seq))


# Catalogues of 1-12 items with SIDs of 1-4 codes: collisions and SIDs that prefix other SIDs
# (a de-duplication level present for some items only) both occur.
catalogues = sid_catalogues.catalogues(max_items=12)


def expected_allowed(catalogue, prefix_tokens):
    """Brute force: next tokens of every SID extending the prefix, plus EOS when the prefix is a whole
    SID or continues nothing."""
    sids = [tok(s) for s in catalogue]
    n = len(prefix_tokens)
    nxt = {s[n] for s in sids if len(s) > n and s[:n] == prefix_tokens}
    if prefix_tokens in sids or not nxt:
        nxt.add(EOS)
    return nxt


@settings(max_examples=60, deadline=None)
@given(catalogue=catalogues, noise=st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=4), max_size=6))
def test_trie_allows_exactly_the_valid_continuations(catalogue, noise):
    trie = SIDTrie.from_codes(catalogue, TOKENS, EOS)
    # every prefix of every SID, plus random token strings (mostly dead ends)
    prefixes = sorted({tok(s)[:n] for s in catalogue for n in range(len(s) + 1)} | {tuple(x) for x in noise})
    for length in {len(p) for p in prefixes}:
        group = [p for p in prefixes if len(p) == length]
        nodes = trie.walk(torch.tensor(group, dtype=torch.int64).reshape(len(group), length))
        mask = trie.allowed_mask(nodes, VOCAB)
        for row, prefix in enumerate(group):  # checking, not decoding: the mask came from one batched call
            assert set(torch.nonzero(mask[row]).flatten().tolist()) == expected_allowed(catalogue, prefix), prefix


@settings(max_examples=40, deadline=None)
@given(catalogue=catalogues)
def test_every_sid_maps_back_to_exactly_its_items(catalogue):
    item_ids = np.arange(100, 100 + len(catalogue))
    trie = SIDTrie.from_codes(catalogue, TOKENS, EOS, item_ids=item_ids)
    width = trie.max_depth + 2
    seqs = torch.full((len(catalogue), width), EOS)
    for i, s in enumerate(catalogue):
        seqs[i, :len(s)] = torch.tensor(tok(s))
    nodes = trie.end_nodes(seqs)
    for i, s in enumerate(catalogue):
        same = [int(item_ids[j]) for j, other in enumerate(catalogue) if other == s]
        assert trie.items_of(int(nodes[i])) == sorted(same)
    assert sorted(trie.items.tolist()) == sorted(item_ids.tolist())


def test_hand_made_trie_with_dedup_level():
    # items 0 and 1 collide on (1, 3) and are split by a fourth-level code; item 2 ends at (1, 2)
    codes = [[1, 3, 0], [1, 3, 1], [1, 2], [2, 0]]
    trie = SIDTrie.from_codes(codes, TOKENS, EOS)
    prefixes = torch.tensor([[TOKENS[0][1], TOKENS[1][3]], [TOKENS[0][1], TOKENS[1][2]],
                             [TOKENS[0][2], TOKENS[1][0]], [TOKENS[0][5], TOKENS[1][0]]])
    mask = trie.allowed_mask(trie.walk(prefixes), VOCAB)
    assert torch.nonzero(mask[0]).flatten().tolist() == [TOKENS[2][0], TOKENS[2][1]]
    assert torch.nonzero(mask[1]).flatten().tolist() == [EOS]
    assert torch.nonzero(mask[2]).flatten().tolist() == [EOS]
    assert torch.nonzero(mask[3]).flatten().tolist() == [EOS]  # not a prefix: may only end
    root = trie.allowed_mask(trie.root(1), VOCAB)
    assert torch.nonzero(root[0]).flatten().tolist() == [TOKENS[0][1], TOKENS[0][2]]
    # a sequence that stops early (no EOS after a whole SID) is no item
    seqs = torch.tensor([[TOKENS[0][1], TOKENS[1][3], TOKENS[2][1], EOS],
                         [TOKENS[0][1], TOKENS[1][3], EOS, EOS],
                         [TOKENS[0][2], TOKENS[1][0], TOKENS[2][0], EOS]])
    nodes = trie.end_nodes(seqs)
    assert trie.items_of(int(nodes[0])) == [1]
    assert nodes[1] == trie.dead and nodes[2] == trie.dead


def test_sparse_pairs_match_the_dense_mask():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, size=(200, 3))
    trie = SIDTrie.from_codes(codes, TOKENS, EOS)
    prefixes = np.concatenate([codes[:50, :2], rng.integers(0, 16, size=(50, 2))])  # valid and mostly dead
    nodes = trie.walk(torch.tensor([tok(p) for p in prefixes.tolist()]))
    rows, tokens = trie.allowed_pairs(nodes)
    dense = torch.zeros(len(nodes), VOCAB, dtype=torch.bool)
    dense[rows, tokens] = True
    assert torch.equal(dense, trie.allowed_mask(nodes, VOCAB))
    assert len(rows) == int(dense.sum())  # no pair listed twice


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="empty SID"):
        SIDTrie.from_codes([[1], []], TOKENS, EOS)
    with pytest.raises(InputError, match="level 4"):
        SIDTrie.from_codes([[1, 1, 1, 1, 1]], TOKENS, EOS)
    with pytest.raises(InputError, match="duplicates"):
        SIDTrie.from_codes([[1], [2]], TOKENS, EOS, item_ids=[3, 3])
    with pytest.raises(InputError, match="catalogue is empty"):
        SIDTrie.from_codes([], TOKENS, EOS)


def test_token_table_from_tokenizer():
    class Tok:  # the part of a Hugging Face tokenizer the table reads
        def get_vocab(self):
            return {"<a_0>": 5, "<a_2>": 6, "<b_1>": 7}

    table = sid_token_table(Tok(), [[0, 1], [2, 1]])
    assert table.tolist() == [[5, -1, 6], [-1, 7, -1]]
    with pytest.raises(InputError, match="<b_0>"):
        sid_token_table(Tok(), [[0, 0]])
