"""Loaders for the public data-set layouts into typed tables (items, interactions, samples per split).

* :func:`load_minionerec` -- MiniOneRec's layout: ``<name>.item.json``, ``<name>.{train,valid,test}.csv``
  (train optional) and, without a train CSV, ``<name>.sequences.jsonl`` to rebuild the "strict" train
  samples (windows whose target lies inside ``items[:n_prefix]``) or "train+valid" (those plus valid).
  ``index.json`` (MiniOneRec's own SIDs) is left to the SID stage.
* :func:`load_lcrec` -- LC-Rec's ``<name>.inter.json`` + ``<name>.item.json``, leave-one-out.
* :func:`load_beauty` -- ``<name>.user_sequence.txt`` + ``<name>.item_textual_id*.txt``, leave-one-out;
  item index = order of first appearance of the ASIN, user index = line order.

Every loader returns a :class:`Loaded`. List cells are parsed with ``ast.literal_eval`` (never ``eval``);
bad input raises :class:`~ray_rec.errors.InputError` naming file, line and field.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ray_rec import schema
from ray_rec.data.samples import build_splits, interactions_table
from ray_rec.errors import InputError, at


@dataclass
class Loaded:
    """What a loader produces; ``text`` is filled later from the template."""

    items: pa.Table
    interactions: pa.Table
    samples: dict[str, pa.Table]
    info: dict = field(default_factory=dict)


def read_text(path: Path) -> str:
    """A whole file as UTF-8, or an InputError naming the line of the first bad byte."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{at(path, line)} not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def find_file(folder: Path, name: str, suffix: str, required: bool = True) -> Path | None:
    """``<folder>/<name><suffix>``; with an empty name, the only ``*<suffix>`` file in the folder."""
    folder = Path(folder)
    if name:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
        matches = []
    else:
        matches = sorted(folder.glob(f"*{suffix}"))
        if len(matches) == 1:
            return matches[0]
    if required:
        hint = f"; several match, set name= to one of {[m.name for m in matches]}" if len(matches) > 1 else ""
        raise InputError(f"{folder}: no file {name or '*'}{suffix}{hint}")
    return None


def _key_lines(text: str) -> dict[str, int]:
    """Line of each top-level ``"key":`` in a pretty-printed JSON object (for error messages)."""
    lines: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r'^ {0,2}"([^"]+)"\s*:', line)
        if m:
            lines.setdefault(m.group(1), i)
    return lines


def _list_text(value, path: Path, line: int | None, name: str) -> list[str]:
    """A field that may be a list, a comma-separated string, or a Python list literal in a string."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") and s.endswith("]"):
            try:
                parsed = ast.literal_eval(s)
            except (ValueError, SyntaxError):
                return [s]
            return _list_text(parsed, path, line, name) if isinstance(parsed, list) else [s]
        return [s] if name == "description" else [c.strip() for c in s.split(",") if c.strip()]
    raise InputError(f"{at(path, line, name)} expected a string or a list, got {type(value).__name__}")


def load_item_json(path: Path) -> pa.Table:
    """``{"<id>": {"title", "description", "brand", "categories"}}`` -> items table sorted by id."""
    text = read_text(path)
    lines = _key_lines(text)

    def no_duplicates(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise InputError(f"{at(path, _nth_line(text, k), 'item_id')} duplicate item id {k!r}")
            seen.add(k)
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise InputError(f"{at(path, exc.lineno)} not valid JSON: {exc.msg}") from None
    rows = []
    for key, rec in data.items():
        line = lines.get(key)
        if not re.fullmatch(r"\d+", key):
            raise InputError(f"{at(path, line, 'item_id')} item id {key!r} is not a non-negative integer")
        if not isinstance(rec, dict) or "title" not in rec:
            raise InputError(f"{at(path, line, 'title')} item {key} has no title")
        desc = _list_text(rec.get("description"), path, line, "description")
        rows.append((int(key), str(rec["title"] or ""), " ".join(desc), str(rec.get("brand") or ""),
                     _list_text(rec.get("categories"), path, line, "categories")))
    rows.sort()
    return items_table(rows)


def _nth_line(text: str, key: str) -> int | None:
    """Line of the second top-level occurrence of ``"key":`` (the duplicate)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if re.match(rf'^\s*"{re.escape(key)}"\s*:', line)]
    return hits[1] if len(hits) > 1 else (hits[0] if hits else None)


def items_table(rows: list[tuple]) -> pa.Table:
    """Rows of (item_id, title, description, brand, categories) -> schema.ITEMS (text left empty)."""
    ids, titles, descs, brands, cats = (list(c) for c in zip(*rows, strict=False)) if rows else ([], [], [], [], [])
    return pa.table({"item_id": pa.array(ids, pa.int64()), "title": titles, "description": descs,
                     "brand": brands, "categories": pa.array(cats, pa.list_(pa.string())),
                     "text": pa.array([""] * len(ids), pa.string())}, schema=schema.ITEMS)


class UserIndex:
    """Raw user ids -> int64: ``A<digits>`` ids keep their number, others are numbered in order seen."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, raw: str) -> int:
        if raw not in self.ids:
            m = re.fullmatch(r"A(\d+)", raw)
            self.ids[raw] = int(m.group(1)) if m else -1 - len(self.ids)
        return self.ids[raw]

    def finish(self, values: list[int]) -> list[int]:
        """Renumber if any id was not of the ``A<digits>`` form (negative placeholders)."""
        if all(v >= 0 for v in self.ids.values()):
            return values
        order = {v: i for i, v in enumerate(dict.fromkeys(self.ids.values()))}
        return [order[v] for v in values]


def _check_item(value: int, n_items: int, path: Path, line: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n_items:
        raise InputError(f"{at(path, line, name)} unknown item {value!r} (item ids are 0..{n_items - 1})")
    return value


def read_sample_csv(path: Path, n_items: int, users: UserIndex) -> tuple[list, list, list]:
    """MiniOneRec CSV -> (users, histories, targets), validated against ``n_items``."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    needed = ("user_id", "history_item_id", "item_id")
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{at(path, 1, missing[0])} missing column (header has {reader.fieldnames})")
    us, hs, ts = [], [], []
    for row in reader:
        line = reader.line_num
        try:
            hist = ast.literal_eval(row["history_item_id"])
        except (ValueError, SyntaxError):
            raise InputError(f"{at(path, line, 'history_item_id')} not a list of item ids: {row['history_item_id']!r}") from None
        if not isinstance(hist, list):
            raise InputError(f"{at(path, line, 'history_item_id')} not a list of item ids: {row['history_item_id']!r}")
        hs.append([_check_item(h, n_items, path, line, "history_item_id") for h in hist])
        target = row["item_id"].strip()
        if not re.fullmatch(r"\d+", target):
            raise InputError(f"{at(path, line, 'item_id')} not an item id: {target!r}")
        ts.append(_check_item(int(target), n_items, path, line, "item_id"))
        us.append(users(row["user_id"]))
    return us, hs, ts


def samples_table(users: list[int], histories: list[list[int]], targets: list[int]) -> pa.Table:
    return pa.table({"user_id": pa.array(users, pa.int64()), "history": pa.array(histories, pa.list_(pa.int64())),
                     "target": pa.array(targets, pa.int64())}, schema=schema.SAMPLES)


def read_sequences(path: Path, n_items: int, users: UserIndex) -> list[tuple[int, list[int], int]]:
    """MiniOneRec ``sequences.jsonl`` -> [(user, items, n_prefix)], validated."""
    out = []
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{at(path, line_no)} not valid JSON: {exc.msg}") from None
        for key in ("user_id", "items", "n_prefix"):
            if key not in rec:
                raise InputError(f"{at(path, line_no, key)} missing key")
        items = [_check_item(i, n_items, path, line_no, "items") for i in rec["items"]]
        out.append((users(str(rec["user_id"])), items, int(rec["n_prefix"])))
    return out


def strict_train(sequences, max_history: int) -> tuple[list, list, list]:
    """Sliding windows whose target lies inside ``items[:n_prefix]`` (no leak into valid/test)."""
    us, hs, ts = [], [], []
    for user, items, n_prefix in sequences:
        for t in range(1, min(n_prefix, len(items))):
            us.append(user)
            hs.append(items[max(0, t - max_history):t])
            ts.append(items[t])
    return us, hs, ts


def load_minionerec(folder: Path, name: str = "", protocol: str = "strict", max_history: int = 10) -> Loaded:
    """MiniOneRec layout; see the module docstring for the train protocols."""
    folder = Path(folder)
    item_path = find_file(folder, name, ".item.json")
    name = name or item_path.name[: -len(".item.json")]
    items = load_item_json(item_path)
    n = len(items)
    if items.column("item_id").to_pylist() != list(range(n)):
        raise InputError(f"{at(item_path, None, 'item_id')} item ids must be exactly 0..{n - 1}")
    users = UserIndex()
    splits = {}
    train_csv = find_file(folder, name, ".train.csv", required=False)
    for split in ("train", "valid", "test"):
        path = find_file(folder, name, f".{split}.csv", required=split != "train")
        if path is not None:
            splits[split] = read_sample_csv(path, n, users)
    seq_path = find_file(folder, name, ".sequences.jsonl", required=train_csv is None)
    sequences = read_sequences(seq_path, n, users) if seq_path else None
    info = {"name": name, "train_protocol": "train.csv" if train_csv else protocol}
    if train_csv is None:
        u, h, t = strict_train(sequences, max_history)
        if protocol == "train+valid":
            u, h, t = u + splits["valid"][0], h + splits["valid"][1], t + splits["valid"][2]
        splits["train"] = (u, h, t)
    if sequences is None:  # rebuild each user's sequence: first history, then every target in file order
        seqs: dict[int, list[int]] = {}
        for split in ("train", "valid", "test"):
            for u, h, t in zip(*splits[split], strict=False):
                seqs.setdefault(u, list(h)).append(t)
        sequences = [(u, s, 0) for u, s in seqs.items()]
    samples = {s: samples_table(users.finish(splits[s][0]), splits[s][1], splits[s][2]) for s in splits}
    seq_users = users.finish([u for u, _, _ in sequences])
    user = np.repeat(seq_users, [len(s) for _, s, _ in sequences])
    item = np.concatenate([s for _, s, _ in sequences]) if sequences else np.zeros(0)
    pos = np.concatenate([np.arange(len(s)) for _, s, _ in sequences]) if sequences else np.zeros(0)
    return Loaded(items, interactions_table(user, item, pos), samples, info)


def _int_list(value, path: Path, line: int | None, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InputError(f"{at(path, line, name)} expected a list of item ids, got {str(value)[:80]}")
    return value


def load_lcrec(folder: Path, name: str = "", max_history: int = 10) -> Loaded:
    """LC-Rec layout: ``inter.json`` user -> chronological items; leave-one-out samples."""
    inter_path = find_file(folder, name, ".inter.json")
    name = name or inter_path.name[: -len(".inter.json")]
    items = load_item_json(find_file(folder, name, ".item.json"))
    n = len(items)
    text = read_text(inter_path)
    lines = _key_lines(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{at(inter_path, exc.lineno)} not valid JSON: {exc.msg}") from None
    users, seqs = [], []
    for key, value in data.items():
        line = lines.get(key)
        if not re.fullmatch(r"\d+", key):
            raise InputError(f"{at(inter_path, line, 'user_id')} user id {key!r} is not an integer")
        seq = _int_list(value, inter_path, line, "items")
        for i in seq:
            _check_item(i, n, inter_path, line, "items")
        users.append(int(key))
        seqs.append(seq)
    return _from_sequences(items, users, seqs, max_history, {"name": name})


def _from_sequences(items: pa.Table, users: list[int], seqs: list[list[int]], max_history: int, info: dict) -> Loaded:
    user = np.repeat(np.asarray(users, dtype=np.int64), [len(s) for s in seqs])
    item = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
    pos = np.concatenate([np.arange(len(s)) for s in seqs]) if seqs else np.zeros(0, np.int64)
    inter = interactions_table(user, item, pos)
    return Loaded(items, inter, build_splits(inter, max_history, "leave_one_out"), info)


def load_beauty(folder: Path, name: str = "", max_history: int = 10) -> Loaded:
    """``user_sequence.txt`` (``user asin asin ...``) + a text file (``asin word word ...``)."""
    folder = Path(folder)
    seq_path = find_file(folder, name, ".user_sequence.txt")
    name = name or seq_path.name[: -len(".user_sequence.txt")]
    text_path = find_file(folder, name, ".item_textual_id.idgenrec.txt", required=False) or \
        find_file(folder, name, ".item_text.txt")
    item_index: dict[str, int] = {}
    users, seqs = [], []
    for line_no, line in enumerate(read_text(seq_path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise InputError(f"{at(seq_path, line_no, 'items')} user {parts[0]!r} has no items")
        seqs.append([item_index.setdefault(a, len(item_index)) for a in parts[1:]])
        users.append(len(users))
    titles: dict[str, str] = {}
    for line_no, line in enumerate(read_text(text_path).splitlines(), 1):
        asin, _, words = line.strip().partition(" ")
        if not asin:
            continue
        if asin in titles:
            raise InputError(f"{at(text_path, line_no, 'asin')} duplicate item {asin!r}")
        titles[asin] = words.strip()
    missing = [a for a in item_index if a not in titles]
    if missing:
        raise InputError(f"{at(text_path, None, 'asin')} no text for {len(missing)} items, e.g. {missing[0]!r}")
    rows = [(i, titles[a], "", "", []) for a, i in item_index.items()]
    return _from_sequences(items_table(rows), users, seqs, max_history, {"name": name})
