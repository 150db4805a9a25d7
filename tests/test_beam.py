"""Constrained beam search returns valid, distinct items ranked by the model's sequence log-probability."""

from __future__ import annotations

import numpy as np
import pytest
import sid_catalogues
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_lm import tiny_lm

from ray_rec.sid.beam import (
    TrieLogitsProcessor,
    constrained_beam_search,
    constrained_topk,
    generate_beams,
    pad_prompts,
    rank_items,
    trie_beam_search,
)
from ray_rec.sid.tokens import render_sid
from ray_rec.sid.trie import SIDTrie

torch.set_num_threads(1)
SIZES = [4, 4, 4, 16]  # the last level also serves as a de-duplication level
MODEL, TOK = tiny_lm(SIZES, hidden=32, layers=2, seed=3)


def prompt_ids(rng: np.random.Generator, n_items: int = 3) -> list[int]:
    history = [render_sid(rng.integers(0, 4, size=3)) for _ in range(n_items)]
    return TOK("user bought " + " ".join(history) + " next item is :", add_special_tokens=False)["input_ids"]


@torch.no_grad()
def exhaustive_scores(prompt: list[int], catalogue: list[list[int]]) -> list[float]:
    """log P(SID tokens | prompt) for every item, plus log P(EOS | SID) where another SID extends this
    one, by teacher forcing (no search)."""
    out = []
    for codes in catalogue:
        extended = any(len(o) > len(codes) and o[:len(codes)] == codes for o in catalogue)
        sid = TOK(render_sid(codes), add_special_tokens=False)["input_ids"] + [TOK.eos_token_id]
        ids = torch.tensor([prompt + sid])
        logp = torch.log_softmax(MODEL(ids).logits[0].float(), dim=-1)
        scored = sid if extended else sid[:-1]
        out.append(sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(scored)))
    return out


catalogues = sid_catalogues.catalogues(max_items=15)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogue=catalogues, num_beams=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_decoder_emits_only_valid_distinct_items_ranked_by_score(catalogue, num_beams, seed):
    rng = np.random.default_rng(seed)
    item_ids = rng.permutation(1000)[:len(catalogue)]
    trie = SIDTrie.from_tokenizer(catalogue, TOK, item_ids=item_ids)
    prompts = [prompt_ids(rng, n) for n in (1, 3, 2)]  # different lengths: left padding in one batch
    k = min(num_beams, 5)
    result = constrained_beam_search(MODEL, TOK, prompts, trie, num_beams=num_beams, k=k, batch_size=2)
    assert result.invalid.tolist() == [0, 0, 0]
    n_distinct = len({tuple(c) for c in catalogue})
    for row, scores in zip(result.items, result.scores, strict=True):
        found = row[row >= 0]
        assert set(found.tolist()) <= set(item_ids.tolist())  # every generation is a real item
        assert len(set(found.tolist())) == len(found)  # and no item twice
        assert len(found) == min(k, len(catalogue)) or n_distinct > num_beams  # all beams used up
        assert np.all(np.diff(scores[row >= 0]) <= 0)  # ranked by beam score


def test_beams_with_room_for_the_whole_catalogue_find_the_exact_ranking():
    rng = np.random.default_rng(0)
    # variable length with a de-duplication level (items 0 and 1 collided on (1, 2, 3)), and a SID that
    # prefixes others ([2, 0]: its EOS is scored; after every other SID the end is forced and free)
    catalogue = [[1, 2, 3, 0], [1, 2, 3, 1], [0, 1, 2], [3, 3, 3], [2, 0, 1], [2, 0, 3], [0, 0, 0], [1, 1], [2, 0]]
    trie = SIDTrie.from_tokenizer(catalogue, TOK)
    prompt = prompt_ids(rng)
    # num_beams >= the catalogue size keeps every prefix alive: beam search is then exhaustive
    result = constrained_beam_search(MODEL, TOK, [prompt], trie, num_beams=len(catalogue), k=len(catalogue))
    exact = np.array(exhaustive_scores(prompt, catalogue))
    assert result.items[0].tolist() == np.argsort(-exact, kind="stable").tolist()
    np.testing.assert_allclose(result.scores[0], np.sort(exact)[::-1], atol=1e-4)


def test_colliding_sids_yield_every_item_lowest_id_first():
    rng = np.random.default_rng(1)
    catalogue = [[0, 1, 2], [3, 3, 3], [0, 1, 2], [2, 2, 2]]  # items 0 and 2 share a SID
    trie = SIDTrie.from_tokenizer(catalogue, TOK, item_ids=[7, 5, 3, 9])
    prompt = prompt_ids(rng)
    result = constrained_beam_search(MODEL, TOK, [prompt], trie, num_beams=3, k=3)
    exact = exhaustive_scores(prompt, [[0, 1, 2], [3, 3, 3], [2, 2, 2]])
    by_sid = {0: [3, 7], 1: [5], 2: [9]}
    expected = [i for s in np.argsort(exact)[::-1] for i in by_sid[int(s)]][:3]
    assert result.items[0].tolist() == expected


def test_processor_is_stateless_and_masks_all_beams_at_once():
    trie = SIDTrie.from_tokenizer([[0, 1], [0, 2], [3, 0]], TOK)
    prompt_len = 4
    a0, b1, eos = (TOK.convert_tokens_to_ids(t) for t in ("<a_0>", "<b_1>", "[EOS]"))
    ids = torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5]])
    beams = torch.cat([ids, torch.tensor([[a0], [b1]])], dim=1)  # a valid prefix, and a dead one
    proc = TrieLogitsProcessor(trie, prompt_len)
    scores = torch.zeros(2, len(TOK))
    first, second = proc(beams, scores.clone()), proc(beams, scores.clone())
    assert torch.equal(first, second)
    allowed = [set(torch.nonzero(torch.isfinite(r)).flatten().tolist()) for r in first]
    assert allowed == [{TOK.convert_tokens_to_ids("<b_1>"), TOK.convert_tokens_to_ids("<b_2>")}, {eos}]


def test_topk_accepts_text_prompts_and_refuses_k_above_beams():
    trie = SIDTrie.from_tokenizer([[0, 1, 2], [1, 2, 3], [2, 3, 0]], TOK)
    top = constrained_topk(MODEL, TOK, ["user bought <a_0> <b_1> <c_2>", "user"], trie, num_beams=4, k=2)
    assert [len(t) for t in top] == [2, 2] and all(set(t) <= {0, 1, 2} for t in top)
    with pytest.raises(ValueError, match="num_beams"):
        constrained_topk(MODEL, TOK, ["user"], trie, num_beams=2, k=3)


def test_batching_padding_and_shared_prefill_leave_results_unchanged():
    rng = np.random.default_rng(2)
    catalogue = rng.integers(0, 4, size=(30, 3)).tolist()
    trie = SIDTrie.from_tokenizer(catalogue, TOK)
    prompts = [prompt_ids(rng, n) for n in (1, 4, 2, 3)]
    alone = constrained_beam_search(MODEL, TOK, prompts, trie, num_beams=8, k=8, batch_size=1)
    batched = constrained_beam_search(MODEL, TOK, prompts, trie, num_beams=8, k=8, batch_size=4)
    assert np.array_equal(alone.items, batched.items)
    np.testing.assert_allclose(alone.scores, batched.scores, atol=1e-4)
    # encoding each prompt once for its beams == letting generate() encode it once per beam
    ids, mask = pad_prompts(prompts, TOK.pad_token_id)
    runs = [generate_beams(MODEL, ids, mask, 8, trie.max_depth + 1, TOK.eos_token_id, TOK.pad_token_id,
                           TrieLogitsProcessor(trie, ids.shape[1]), shared_prefill=shared) for shared in (True, False)]
    assert torch.equal(runs[0][0], runs[1][0])
    torch.testing.assert_close(runs[0][1], runs[1][1], atol=1e-4, rtol=0)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_items=st.integers(1, 40), num_beams=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_trie_search_ranks_as_generate_with_the_trie_mask(n_items, num_beams, seed):
    # fixed-depth SIDs: the trie's own loop and generate() + TrieLogitsProcessor run the same search
    rng = np.random.default_rng(seed)
    trie = SIDTrie.from_tokenizer(rng.integers(0, 4, size=(n_items, 3)).tolist(), TOK)
    ids, mask = pad_prompts([prompt_ids(rng, n) for n in (2, 1, 3)], TOK.pad_token_id)
    ours = trie_beam_search(MODEL, ids, mask, trie, num_beams, TOK.pad_token_id)
    hf = generate_beams(MODEL, ids, mask, num_beams, trie.max_depth + 1, TOK.eos_token_id, TOK.pad_token_id,
                        TrieLogitsProcessor(trie, ids.shape[1]))
    assert ours[0].shape == (3, num_beams, trie.max_depth + 1)
    a, b = rank_items(trie, *ours, k=num_beams), rank_items(trie, *hf, k=num_beams)
    assert np.array_equal(a.items, b.items) and a.invalid.tolist() == [0, 0, 0]
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
