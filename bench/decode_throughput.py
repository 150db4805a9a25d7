"""Decoding throughput: our trie beam search vs a per-beam prefix dictionary vs no constraint.

One run, one model, the same users and beams for every variant, measured side by side in alternating
rounds (so machine load hits them alike):

* ``trie_search``  -- ray_rec.sid.beam.trie_beam_search, the decoder evaluation and GRPO use: a beam
                      search that walks the trie itself (prompt encoded once, its logits give the first
                      code; no forward pass for the EOS the trie forces);
* ``trie``         -- ray_rec.sid.beam.TrieLogitsProcessor inside ``generate``: every beam's trie node
                      re-derived from the generated tokens and masked with a few tensor ops at once;
* ``per_beam_dict``-- MiniOneRec's approach, written here from its description: a dict from the tuple
                      of generated tokens to the allowed next ids, looked up in a Python loop per beam;
* ``unconstrained``-- plain ``generate`` beam search (no processor);
* ``minionerec``   -- the per-beam dictionary as MiniOneRec's decode runs it: ``generate`` encodes the
                      prompt once per beam (no shared prefill), so the whole approach is compared too.

``trie``, ``per_beam_dict`` and ``unconstrained`` share one ``generate`` decoder (prompt encoded once
per user, then repeated for its beams), so their difference is the processor alone; ``minionerec``
differs from ``per_beam_dict`` only by running the prompt through the model for every beam.

Catalogue and users are real: MiniOneRec's SIDs of Amazon Industrial (3,686 items, 3 x 256 codes) and
the histories of its test rows. The model is the SFT stage's default architecture (random Qwen2, BPE
tokenizer trained on the titles, SID tokens added; speed does not depend on the weights), or
``--checkpoint`` for one trained on these SIDs. Besides end-to-end users/s, the time spent inside each
logits processor is measured on its own (the part of the work the variants do differently).

Run:  .venv/bin/python bench/decode_throughput.py [--users 64] [--beams 50] [--batch-size 16] [--rounds 3]
          [--threads 1] [--name decode_throughput]
Goal: our constrained search within 1.2x the time of unconstrained, and >= 5x faster than the per-beam approach.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Timer, write_result  # noqa: E402
from ray_rec.runtime import set_threads, setup_env  # noqa: E402
from ray_rec.sid.beam import (  # noqa: E402
    TrieLogitsProcessor,
    encode_prompts,
    generate_beams,
    pad_prompts,
    rank_items,
    special_ids,
    trie_beam_search,
)
from ray_rec.sid.tokens import parse_sid  # noqa: E402
from ray_rec.sid.trie import SIDTrie  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon18_industrial"


class Timed(LogitsProcessor):
    """Wraps a processor and adds the seconds spent in it to ``self.seconds``."""

    def __init__(self, inner: LogitsProcessor):
        self.inner, self.seconds = inner, 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        with Timer() as t:
            out = self.inner(input_ids, scores)
        self.seconds += t.seconds
        return out


class PerBeamDictProcessor(LogitsProcessor):
    """MiniOneRec-style: {generated prefix tuple: allowed next ids}, looked up beam by beam."""

    def __init__(self, allowed: dict[tuple[int, ...], list[int]], prompt_len: int, eos_id: int):
        self.allowed, self.prompt_len, self.eos_id = allowed, prompt_len, eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):  # the per-beam Python loop this benchmark measures
            prefix = tuple(input_ids[row, self.prompt_len:].tolist())
            allowed = self.allowed.get(prefix, [self.eos_id])
            mask[row, allowed] = 0.0
            if allowed == [self.eos_id]:  # a forced end costs nothing, as in the trie processor
                mask[row, self.eos_id] = -scores[row, self.eos_id]
        return scores + mask


def prefix_dict(token_seqs: list[list[int]], eos_id: int) -> dict[tuple[int, ...], list[int]]:
    """Every prefix of every SID -> its sorted next tokens (EOS after a whole SID)."""
    nxt: dict[tuple[int, ...], set[int]] = {}
    for seq in token_seqs:
        for n in range(len(seq)):
            nxt.setdefault(tuple(seq[:n]), set()).add(seq[n])
        nxt.setdefault(tuple(seq), set()).add(eos_id)
    return {k: sorted(v) for k, v in nxt.items()}


def industrial(users: int) -> tuple[np.ndarray, list[list[int]], list[list[int]]]:
    """(item ids, codes per item, history item ids of the first ``users`` test rows)."""
    index = json.loads((DATA / "Industrial_and_Scientific.index.json").read_text())
    item_ids = np.array(sorted(int(k) for k in index))
    codes = [parse_sid(index[str(i)]) for i in item_ids]
    with open(DATA / "Industrial_and_Scientific.test.csv", newline="") as fh:
        rows = [json.loads(r["history_item_id"]) for _, r in zip(range(users), csv.DictReader(fh), strict=False)]
    return item_ids, codes, rows


def load_model(args, codes):
    """(model, tokenizer): ``--checkpoint``, else the SFT stage's default model built at random."""
    if args.checkpoint:
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
        return (AutoModelForCausalLM.from_pretrained(args.checkpoint).eval(),
                PreTrainedTokenizerFast.from_pretrained(args.checkpoint))
    import dataclasses

    import pyarrow as pa

    from ray_rec.lm.config import ModelSection
    from ray_rec.lm.model import build_model_and_tokenizer
    from ray_rec.sid.index_io import codebook_sizes

    items = json.loads((DATA / "Industrial_and_Scientific.item.json").read_text())
    titles = pa.table({"title": [v.get("title") or "" for v in items.values()]})
    section = dataclasses.replace(ModelSection(), hidden_size=args.hidden, num_layers=args.layers)
    model, tok = build_model_and_tokenizer(section, titles, codebook_sizes(pa.table({"codes": codes})))
    return model.eval(), tok


def decode(model, batches, num_beams, max_new, eos, pad, make_processor, trie, k, shared_prefill=True) -> dict:
    """Beam search over every batch -> seconds, seconds inside the processor, generated length,
    invalid generations and the ranked items. ``make_processor`` None: our trie search
    (:func:`trie_beam_search`, no ``generate``); else ``generate`` with that processor."""
    invalid, items, in_processor, lengths = 0, [], 0.0, []
    with Timer() as t:
        for input_ids, mask in batches:
            if make_processor is None:
                seqs, scores = trie_beam_search(model, input_ids, mask, trie, num_beams, pad)
                proc = None
            else:
                inner = make_processor(input_ids.shape[1])
                proc = Timed(inner) if inner is not None else None
                seqs, scores = generate_beams(model, input_ids, mask, num_beams, max_new, eos, pad, proc,
                                              shared_prefill=shared_prefill)
            result = rank_items(trie, seqs, scores, k)
            invalid += int(result.invalid.sum())
            items.append(result.items)
            in_processor += proc.seconds if proc is not None else 0.0
            lengths.append(seqs.shape[-1])
    return {"seconds": t.seconds, "processor_seconds": in_processor, "steps": float(np.mean(lengths)),
            "invalid": invalid, "items": np.concatenate(items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--beams", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16, help="users per generate() call")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median counts")
    parser.add_argument("--hidden", type=int, default=128, help="built model width (SFT default 128)")
    parser.add_argument("--layers", type=int, default=2, help="built model blocks (SFT default 2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", default="", help="HF model folder trained on MiniOneRec's Industrial SIDs")
    parser.add_argument("--name", default="decode_throughput", help="bench/results/<name>.json")
    args = parser.parse_args()
    setup_env()
    set_threads(args.threads)

    from ray_rec.lm.prompts import encode_prompt

    item_ids, codes, histories = industrial(args.users)
    model, tok = load_model(args, codes)
    codes_of = dict(zip(item_ids.tolist(), codes, strict=True))
    eos, pad = special_ids(tok)
    trie = SIDTrie.from_tokenizer(codes, tok, item_ids=item_ids)
    table = prefix_dict([[int(t) for t in tok.convert_tokens_to_ids([f"<{'abc'[lv]}_{c}>" for lv, c in enumerate(s)])]
                         for s in codes], eos)
    prompts = encode_prompts(tok, [encode_prompt(tok, [codes_of[i] for i in h]) for h in histories])
    order = np.argsort([len(p) for p in prompts], kind="stable")  # as the evaluation batches them
    batches = [pad_prompts([prompts[i] for i in order[s:s + args.batch_size]], pad)
               for s in range(0, len(prompts), args.batch_size)]
    trie_mask = lambda n: TrieLogitsProcessor(trie, n)  # noqa: E731
    per_beam = lambda n: PerBeamDictProcessor(table, n, eos)  # noqa: E731
    variants = {  # name: (processor for a prompt length, prompt encoded once per user and shared by its beams)
        "trie_search": (None, True),
        "trie": (trie_mask, True),
        "per_beam_dict": (per_beam, True),
        "unconstrained": (lambda n: None, True),
        "minionerec": (per_beam, False),
    }
    max_new, k = trie.max_depth + 1, min(10, args.beams)
    decode(model, batches[:1], args.beams, max_new, eos, pad, trie_mask, trie, k)  # warm-up
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (make, shared) in variants.items():
            runs[name].append(decode(model, batches, args.beams, max_new, eos, pad, make, trie, k,
                                     shared_prefill=shared))
    med = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    proc = {name: statistics.median(r["processor_seconds"] for r in rs) for name, rs in runs.items()}
    results = {
        "users": len(prompts), "beams": args.beams, "batch_size": args.batch_size, "rounds": args.rounds,
        "model_parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tok),
        "items": len(item_ids), "trie_nodes": trie.n_nodes, "threads": args.threads,
        "seconds": {name: [round(r["seconds"], 3) for r in rs] for name, rs in runs.items()},
        "users_per_s": {name: round(len(prompts) / s, 2) for name, s in med.items()},
        "processor_seconds_median": {name: round(s, 4) for name, s in proc.items()},
        "generated_steps": {name: rs[-1]["steps"] for name, rs in runs.items()},
        "invalid_generations": {name: rs[-1]["invalid"] for name, rs in runs.items()},
        "search_equals_trie": bool(np.array_equal(runs["trie_search"][-1]["items"], runs["trie"][-1]["items"])),
        "trie_equals_per_beam_dict": bool(np.array_equal(runs["trie"][-1]["items"], runs["per_beam_dict"][-1]["items"])),
        "trie_equals_minionerec": bool(np.array_equal(runs["trie"][-1]["items"], runs["minionerec"][-1]["items"])),
        "prompt_tokens_mean": round(float(np.mean([len(p) for p in prompts])), 1),
        "trie_time_over_unconstrained": round(med["trie"] / med["unconstrained"], 3),
        "per_beam_time_over_trie": round(med["per_beam_dict"] / med["trie"], 2),
        "per_beam_processor_over_trie_processor": round(proc["per_beam_dict"] / proc["trie"], 1),
        "minionerec_time_over_trie": round(med["minionerec"] / med["trie"], 2),
        "search_time_over_unconstrained": round(med["trie_search"] / med["unconstrained"], 3),
        "per_beam_time_over_search": round(med["per_beam_dict"] / med["trie_search"], 2),
        "minionerec_time_over_search": round(med["minionerec"] / med["trie_search"], 2),
    }
    for name in variants:
        print(f"{name:>14}: {results['users_per_s'][name]:8.2f} users/s  (median of {args.rounds}: {med[name]:.2f} s, "
              f"{proc[name]:.3f} s in the processor, {results['generated_steps'][name]:.1f} steps; "
              f"invalid generations {results['invalid_generations'][name]})")
    print(f"trie / unconstrained time: {results['trie_time_over_unconstrained']}x (goal <= 1.2)")
    print(f"per-beam dict / trie time: {results['per_beam_time_over_trie']}x end to end, "
          f"{results['per_beam_processor_over_trie_processor']}x inside the processor (goal >= 5)")
    print(f"MiniOneRec's decode (prompt per beam + per-beam dict) / trie time: "
          f"{results['minionerec_time_over_trie']}x end to end")
    print(f"our trie search / unconstrained time: {results['search_time_over_unconstrained']}x (goal <= 1.2); "
          f"per-beam dict / trie search: {results['per_beam_time_over_search']}x; MiniOneRec's decode / trie "
          f"search: {results['minionerec_time_over_search']}x end to end (goal >= 5)")
    print(f"trie search ranks the same items as generate + trie mask: {results['search_equals_trie']}")
    print(f"trie ranks the same items as per-beam dict: {results['trie_equals_per_beam_dict']}, "
          f"as MiniOneRec's decode: {results['trie_equals_minionerec']}")
    write_result(args.name, results)


if __name__ == "__main__":
    main()
