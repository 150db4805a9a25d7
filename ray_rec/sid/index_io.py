"""SID artifacts on disk: the codes Parquet (schema CODES) and MiniOneRec's ``index.json``.

``index.json`` maps item ids to token lists, ``{"0": ["<a_236>", "<b_231>", "<c_226>"], ...}``; it is
how MiniOneRec, LC-Rec and LETTER ship SIDs. Reading one gives the same codes artifact this package
builds, so SIDs made elsewhere go through the same report, trie and training; writing one lets
MiniOneRec users take ours out. The Parquet file is read by :func:`ray_rec.artifacts.read_codes` alone;
this module turns its table into the two in-memory forms: an (n, L) int64 array where a
de-duplication level that only some items have is padded with -1 (:data:`ray_rec.sid.collisions.PAD`,
:func:`codes_arrays`), or a dict item -> codes (:func:`codes_by_item`). Example::

    table = codes_from_index_json("../shared/data/amazon18_industrial/Industrial_and_Scientific.index.json")
    item_ids, codes = codes_arrays(artifacts.read_codes(RunPaths("runs/default").codes("rqkmeans_constrained")))
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from ray_rec.errors import InputError, at
from ray_rec.io import write_parquet, write_text
from ray_rec.schema import CODES
from ray_rec.sid.collisions import PAD
from ray_rec.sid.tokens import parse_sid, sid_token


def pad_codes(rows: list[list[int]]) -> np.ndarray:
    """Variable-length code lists -> (n, max length) int64 array padded with -1 on the right."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def unpad_codes(codes: np.ndarray) -> list[list[int]]:
    """(n, L) array padded with -1 -> one list per item without the padding."""
    return [[int(c) for c in row if c != PAD] for row in np.asarray(codes)]


def codes_table(item_ids: np.ndarray, codes: np.ndarray) -> pa.Table:
    """(n,) item ids and (n, L) padded codes -> a CODES table sorted by item id."""
    order = np.argsort(item_ids, kind="stable")
    return pa.table({"item_id": pa.array(np.asarray(item_ids)[order], pa.int64()),
                     "codes": pa.array(unpad_codes(np.asarray(codes)[order]), pa.list_(pa.int64()))},
                    schema=CODES)


SIZES_KEY = b"ray_rec.codebook_sizes"  # Parquet schema metadata: codes per level, JSON list
LEVELS_KEY = b"ray_rec.levels"          # how many of those levels are the quantizer's (the rest de-duplicate)


def used_sizes(codes: np.ndarray) -> list[int]:
    """Largest code + 1 of each level of (n, L) codes padded with -1.

    >>> used_sizes(np.array([[0, 2, -1], [3, 1, 0]]))
    [4, 3, 1]
    """
    codes = np.asarray(codes)
    return [int(codes[:, level].max()) + 1 for level in range(codes.shape[1])]


def write_codes(item_ids: np.ndarray, codes: np.ndarray, path: str | Path, sizes: list[int] | None = None) -> Path:
    """Write the codes artifact (Parquet, schema CODES) atomically, with the codes per level stored
    beside the codes. ``sizes``: the quantizer's codes per level (default: every level sized by its
    largest code + 1); levels past them (de-duplication) are sized by their largest code + 1. How many
    levels the quantizer made is stored too."""
    codes = np.asarray(codes)
    used = used_sizes(codes)
    stored = used if sizes is None else list(sizes) + used[len(sizes):]
    levels = len(used) if sizes is None else len(sizes)
    if len(stored) != len(used) or any(s < u for s, u in zip(stored, used, strict=True)):
        raise ValueError(f"codebook sizes {stored} do not cover the codes (largest code + 1 per level: {used})")
    schema = CODES.with_metadata({SIZES_KEY: json.dumps(stored), LEVELS_KEY: str(levels)})
    return write_parquet(codes_table(item_ids, codes), path, schema)


def codebook_sizes(table: pa.Table) -> list[int]:
    """Codes per level of a CODES table: as stored by :func:`write_codes`, or (a file written elsewhere)
    the largest code + 1 of each level.

    >>> codebook_sizes(pa.table({"item_id": [0, 1], "codes": [[0, 2], [3, 1, 0]]}))
    [4, 3, 1]
    """
    stored = (table.schema.metadata or {}).get(SIZES_KEY)
    if stored is not None:
        return [int(s) for s in json.loads(stored)]
    return used_sizes(pad_codes(table.column("codes").to_pylist()))


def quantizer_levels(table: pa.Table) -> int | None:
    """How many levels of a CODES table the quantizer made (later ones de-duplicate), when stored."""
    stored = (table.schema.metadata or {}).get(LEVELS_KEY)
    return int(stored) if stored is not None else None


def codes_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """A CODES table (:func:`ray_rec.artifacts.read_codes`) -> (item_ids (n,) int64, codes (n, L) int64),
    sorted by item id: the form the quantizers and reports compute with.

    Items without the de-duplication level (or any shorter SID) are padded with -1 on the right.
    """
    item_ids = table.column("item_id").to_numpy()
    codes = pad_codes(table.column("codes").to_pylist())
    order = np.argsort(item_ids, kind="stable")
    return item_ids[order], codes[order]


def codes_by_item(table: pa.Table) -> dict[int, list[int]]:
    """A CODES table -> {item id: its codes}, in table order: the form prompts and tries are built from.

    >>> codes_by_item(pa.table({"item_id": [4, 1], "codes": [[0, 2], [3, 1, 0]]}))
    {4: [0, 2], 1: [3, 1, 0]}
    """
    return dict(zip(table.column("item_id").to_pylist(), table.column("codes").to_pylist(), strict=True))


def read_index_json(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MiniOneRec ``index.json`` -> (item_ids (n,) int64, codes (n, L) int64 padded with -1), by item id."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: index file does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{at(path, exc.lineno)} not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty object {{\"item id\": [\"<a_1>\", ...]}}")
    ids, rows = [], []
    for key, tokens in data.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise InputError(f"{at(path, field=key)} item ids must be non-negative integers")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InputError(f"{at(path, field=key)} expected a list of SID tokens, got {tokens!r}")
        try:
            rows.append(parse_sid(tokens))
        except ValueError as exc:
            raise InputError(f"{at(path, field=key)} {exc}") from None
        ids.append(int(key))
    item_ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(item_ids, kind="stable")
    return item_ids[order], pad_codes(rows)[order]


def codes_from_index_json(path: str | Path) -> pa.Table:
    """MiniOneRec ``index.json`` -> a CODES table (item_id, codes), sorted by item id."""
    return codes_table(*read_index_json(path))


def write_index_json(item_ids: np.ndarray, codes: np.ndarray, path: str | Path) -> Path:
    """Write (n,) ids and (n, L) padded codes as MiniOneRec ``index.json`` (atomic, keys in id order)."""
    order = np.argsort(item_ids, kind="stable")
    data = {str(int(item_ids[i])): [sid_token(level, c) for level, c in enumerate(unpad_codes(codes[i:i + 1])[0])]
            for i in order}
    # Not write_json: it sorts keys as strings ("10" < "2"); numeric order reads better.
    return write_text(json.dumps(data) + "\n", path)
