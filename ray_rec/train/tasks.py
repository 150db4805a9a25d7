"""MiniOneRec's SFT task mix, built from the typed artifacts into token ids with response-only labels.

Tasks (prompt templates in :mod:`ray_rec.lm.prompts`; the loss covers the response and EOS only):

==================== ============================== ==============================
task                 prompt                         response
==================== ============================== ==============================
sid_next   (main)    SID history                    next item's SID
sid_seq    (main)    a whole user sequence of SIDs: every SID after the first is a target
sid_to_title         an item's SID                  its title
title_to_sid         an item's title                its SID
sid_history_title    SID history                    next item's title
title_history_title  title history                  next item's title
title_history_sid    title history                  next item's SID
==================== ============================== ==============================

Inputs are the tables :mod:`ray_rec.artifacts` reads (``items.parquet``, ``samples_<split>.parquet``,
``codes.parquet``), turned into Python by :meth:`Samples.from_table`, :func:`titles_by_item` and
:func:`ray_rec.sid.index_io.codes_by_item`; the result is an :class:`Examples` pack of flat int32
arrays that Ray ships to the workers once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ray_rec.data.samples import user_sequences, windows
from ray_rec.errors import InputError, at
from ray_rec.lm import prompts
from ray_rec.sid.tokens import sid_token
from ray_rec.sid.trie import sid_token_table
from ray_rec.train.config import TASKS, TasksSection

IGNORE = -100


@dataclass(frozen=True)
class Samples:
    """One split's samples (SAMPLES schema) as Python lists; ``path`` names them in errors."""

    users: list[int]
    histories: list[list[int]]
    targets: list[int]
    path: str = "<samples>"

    @classmethod
    def from_table(cls, table: pa.Table, path: str | Path = "<samples>") -> Samples:
        """A SAMPLES table (:func:`ray_rec.artifacts.read_samples` of ``path``) as Python lists."""
        return cls(table.column("user_id").to_pylist(), table.column("history").to_pylist(),
                   table.column("target").to_pylist(), str(path))


@dataclass
class Examples:
    """Tokenized examples packed flat: example i is ``ids[offsets[i]:offsets[i+1]]``."""

    ids: np.ndarray      # (total_tokens,) int32
    labels: np.ndarray   # (total_tokens,) int32, IGNORE outside responses
    offsets: np.ndarray  # (n + 1,) int64
    task: np.ndarray     # (n,) int8 index into TASKS
    # teacher soft targets (ray_rec.train.distill), or None: a labelled SID token at flat position t
    # has the distribution soft[soft_at[t]] over the codes of its level, whose token ids are
    # level_tokens[soft_level[soft_at[t]]]; soft_at is -1 elsewhere
    soft: np.ndarray | None = None          # (n_soft, size) float32
    soft_level: np.ndarray | None = None    # (n_soft,) int8
    soft_at: np.ndarray | None = None       # (total_tokens,) int32
    level_tokens: np.ndarray | None = None  # (depth, size) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.offsets[i], self.offsets[i + 1]
        return self.ids[s:e], self.labels[s:e]

    @staticmethod
    def pack(pairs: Sequence[tuple[list[int], list[int]]], task: Sequence[int],
             softs: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
             level_tokens: np.ndarray | None = None) -> Examples:
        """``softs``: per pair None or (levels (r,), distributions (r, size)) of its first r labelled tokens."""
        lengths = np.array([len(ids) for ids, _ in pairs], dtype=np.int64)
        def flat(k):
            return np.fromiter((t for p in pairs for t in p[k]), dtype=np.int32, count=int(lengths.sum()))
        out = Examples(ids=flat(0), labels=flat(1), offsets=np.concatenate([[0], np.cumsum(lengths)]),
                       task=np.asarray(task, dtype=np.int8))
        if softs is None or not any(s is not None for s in softs):
            return out
        out.soft_at = np.full(len(out.ids), -1, dtype=np.int32)
        levels, rows, n = [], [], 0
        for k, soft in enumerate(softs):
            if soft is None:
                continue
            level, q = soft
            at = out.offsets[k] + np.flatnonzero(out.labels[out.offsets[k]:out.offsets[k + 1]] != IGNORE)[:len(q)]
            out.soft_at[at] = np.arange(n, n + len(q))
            levels.append(level)
            rows.append(q)
            n += len(q)
        out.soft = np.concatenate(rows).astype(np.float32)
        out.soft_level = np.concatenate(levels).astype(np.int8)
        out.level_tokens = np.asarray(level_tokens, dtype=np.int64)
        return out


# ---------------------------------------------------------------- artifact tables -> Python

def titles_by_item(items: pa.Table) -> dict[int, str]:
    """An items table with item_id and title columns -> item id -> title (items without a title left out)."""
    return {i: t.strip() for i, t in zip(items.column("item_id").to_pylist(), items.column("title").to_pylist(), strict=True)
            if t and t.strip()}


def check_sids(samples: Samples, codes: dict[int, list[int]], codes_path: str | Path = "codes.parquet") -> None:
    """Every history item and target must have a SID; else InputError naming the row and field."""
    for row, (history, target) in enumerate(zip(samples.histories, samples.targets, strict=False)):
        for field, items in (("history", history), ("target", [target])):
            missing = [i for i in items if i not in codes]
            if missing:
                raise InputError(f"{at(samples.path, row, field)} item {missing[0]} has no SID in {codes_path}; "
                                 "compute SIDs for the same items.parquet the samples were made from "
                                 "(rerun `ray-rec sid` on this run)")


def sid_token_ids(tokenizer, codes: dict[int, list[int]]) -> dict[int, list[int]]:
    """item -> token ids of its SID; InputError when a SID token is not a single known token."""
    vocab = tokenizer.get_vocab()
    out = {}
    for item, row in codes.items():
        ids = []
        for level, c in enumerate(row):
            token = sid_token(level, c)
            if token not in vocab:
                raise InputError(f"SID token {token} (item {item}) is missing from the tokenizer; the tokenizer was "
                                 "built for other SIDs: delete the run's sft/<name>/inputs folder (or pick a new "
                                 "name) so it is rebuilt with add_sid_tokens for these codes")
            ids.append(vocab[token])
        out[item] = ids
    return out


# ---------------------------------------------------------------- whole user sequences

# ---------------------------------------------------------------- per-task examples

def _title(titles: dict[int, str], item: int, max_words: int) -> str | None:
    t = titles.get(item)
    return " ".join(t.split()[:max_words]) if t else None


def sid_next_examples(tok, samples: Samples, sids: dict[int, list[int]], max_history: int):
    """Main task: ids = BOS? + head + history SIDs, labels on target SID + EOS (no text tokenizing per row:
    SID tokens are added tokens, so this equals encode_pair(history_prompt, response_text))."""
    head, eos = prompts.encode_text(tok, prompts.HISTORY_HEAD, bos=True), int(tok.eos_token_id)
    pairs = []
    for h, t in zip(samples.histories, samples.targets, strict=False):
        prompt = head + [x for i in h[-max_history:] for x in sids[i]]
        response = sids[t] + [eos]
        pairs.append((prompt + response, [IGNORE] * len(prompt) + response))
    return pairs


def sid_seq_windows(samples: Samples, max_items: int) -> list[tuple[list[int], bool]]:
    """The windows of at least 2 items of every user sequence, each with whether it ends the sequence."""
    out = []
    for seq in user_sequences(samples.users, samples.histories, samples.targets):
        parts = windows(seq, max_items)
        out.extend((win, k == len(parts) - 1) for k, win in enumerate(parts) if len(win) >= 2)
    return out


def sid_seq_examples(tok, samples: Samples, sids: dict[int, list[int]], max_items: int):
    """Whole sequences in windows: labels on every SID after the window's first item; EOS (labelled)
    only after the last item of a user's sequence."""
    head, eos = prompts.encode_text(tok, prompts.HISTORY_HEAD, bos=True), int(tok.eos_token_id)
    pairs = []
    for win, last in sid_seq_windows(samples, max_items):
        first = sids[win[0]]
        rest = [x for i in win[1:] for x in sids[i]] + ([eos] if last else [])
        pairs.append((head + first + rest, [IGNORE] * (len(head) + len(first)) + rest))
    return pairs


def text_pairs(task: str, samples: Samples, codes: dict[int, list[int]], titles: dict[int, str],
               cfg: TasksSection) -> list[tuple[str, str]]:
    """(prompt, response) texts of a text task; examples lacking a title are left out."""
    w = cfg.max_title_words
    if task in ("sid_to_title", "title_to_sid"):
        items = sorted(i for i in codes if _title(titles, i, w))
        if task == "sid_to_title":
            return [(prompts.sid_to_title_prompt(codes[i]), prompts.title_response(_title(titles, i, w)))
                    for i in items]
        return [(prompts.title_to_sid_prompt(_title(titles, i, w)), prompts.response_text(codes[i])) for i in items]
    out = []
    for h, t in zip(samples.histories, samples.targets, strict=False):
        h = h[-cfg.max_history:]
        if task == "sid_history_title":
            if _title(titles, t, w):
                out.append((prompts.sid_history_title_prompt([codes[i] for i in h]),
                            prompts.title_response(_title(titles, t, w))))
            continue
        names = [_title(titles, i, w) for i in h]
        if not all(names):
            continue
        if task == "title_history_title" and _title(titles, t, w):
            out.append((prompts.title_history_title_prompt(names), prompts.title_response(_title(titles, t, w))))
        elif task == "title_history_sid":
            out.append((prompts.title_history_sid_prompt(names), prompts.response_text(codes[t])))
    return out


def encode_pairs(tok, texts: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """Batch version of prompts.encode_pair (same ids, same labels)."""
    if not texts:
        return []
    heads = tok([p for p, _ in texts], add_special_tokens=False)["input_ids"]
    tails = tok([r for _, r in texts], add_special_tokens=False)["input_ids"]
    bos = [int(tok.bos_token_id)] if tok.bos_token_id is not None else []
    eos = int(tok.eos_token_id)
    return [(bos + h + t + [eos], [IGNORE] * (len(bos) + len(h)) + t + [eos]) for h, t in zip(heads, tails, strict=False)]


def task_pairs(task: str, tok, samples: Samples, codes, sids, titles, cfg: TasksSection):
    """All (ids, labels) pairs of one task."""
    if task == "sid_next":
        return sid_next_examples(tok, samples, sids, cfg.max_history)
    if task == "sid_seq":
        return sid_seq_examples(tok, samples, sids, cfg.seq_max_items)
    return encode_pairs(tok, text_pairs(task, samples, codes, titles, cfg))


def teacher_soft(task: str, teacher, samples: Samples, cfg: TasksSection) -> list:
    """Per example of a main task (same order as :func:`task_pairs`): (levels, distributions) of the
    target SIDs' tokens from ``teacher`` (:class:`ray_rec.train.distill.Teacher`), None for an example
    without history; an empty list for the other tasks."""
    if task == "sid_seq":
        seqs = [win for win, _ in sid_seq_windows(samples, cfg.seq_max_items)]
        n = [len(w) - 1 for w in seqs]
    elif task == "sid_next":
        seqs = [list(h[-cfg.max_history:]) + [t] for h, t in zip(samples.histories, samples.targets, strict=False)]
        n = [1] * len(seqs)
    else:
        return []
    known = [k for k, s in enumerate(seqs) if len(s) >= 2]
    out: list = [None] * len(seqs)
    for k, soft in zip(known, teacher.soft_rows([seqs[k] for k in known], [n[k] for k in known]), strict=True):
        out[k] = soft
    return out


def weighted_indices(n: int, weight: float, rng: np.random.Generator) -> np.ndarray:
    """floor(weight) full copies of range(n) plus a random fraction of it (no repeats inside it)."""
    whole, frac = int(weight), weight - int(weight)
    extra = rng.choice(n, size=int(round(frac * n)), replace=False) if n else np.zeros(0, np.int64)
    return np.concatenate([np.tile(np.arange(n), whole), np.sort(extra)]).astype(np.int64)


def build_examples(tok, cfg: TasksSection, samples: Samples, codes: dict[int, list[int]],
                   titles: dict[int, str], seed: int = 0, teacher=None) -> tuple[Examples, dict[str, dict[str, int]]]:
    """The weighted task mix as one Examples pack, and per-task counts (examples, dropped as too long).
    With a ``teacher`` (:class:`ray_rec.train.distill.Teacher`) the main tasks' SID tokens carry its
    soft targets."""
    sids = sid_token_ids(tok, codes)
    rng = np.random.default_rng(seed)
    pairs, task_of, softs, counts = [], [], [], {}
    for k, (task, weight) in enumerate(cfg.weights().items()):
        if weight <= 0:
            continue
        base = task_pairs(task, tok, samples, codes, sids, titles, cfg)
        soft = (teacher_soft(task, teacher, samples, cfg) if teacher is not None else []) or [None] * len(base)
        fit = [j for j, p in enumerate(base) if len(p[0]) <= cfg.max_length]
        chosen = weighted_indices(len(fit), weight, rng)
        pairs.extend(base[fit[i]] for i in chosen)
        softs.extend(soft[fit[i]] for i in chosen)
        task_of.extend([k] * len(chosen))
        counts[task] = {"examples": len(chosen), "too_long": len(base) - len(fit)}
    if not pairs:
        raise InputError("the task mix produced no training example (no samples, or no titles for the title "
                         f"tasks); per task: {counts}; enable tasks.sid_next or check the data stage output")
    if teacher is None:
        return Examples.pack(pairs, task_of), counts
    tokens = sid_token_table(tok, list(codes.values())).clip(min=0)  # unused codes: any token, teacher mass 0
    return Examples.pack(pairs, task_of, softs, tokens), counts


def valid_examples(tok, samples: Samples, codes: dict[int, list[int]], cfg: TasksSection,
                   max_samples: int, seed: int = 0) -> Examples:
    """Main-task examples of (at most ``max_samples`` random) valid samples, labelled on the target's
    SID tokens only: the evaluation never scores a forced EOS (:mod:`ray_rec.sid.beam`), and a model
    trained on whole sequences (``sid_seq``) is seldom shown EOS, so the valid loss leaves it out too."""
    n = len(samples.targets)
    keep = np.arange(n) if not max_samples or n <= max_samples else \
        np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
    sub = Samples([samples.users[i] for i in keep], [samples.histories[i] for i in keep],
                  [samples.targets[i] for i in keep], samples.path)
    pairs = [(ids, labels[:-1] + [IGNORE]) for ids, labels in
             sid_next_examples(tok, sub, sid_token_ids(tok, codes), cfg.max_history) if len(ids) <= cfg.max_length]
    return Examples.pack(pairs, [TASKS.index("sid_next")] * len(pairs))
