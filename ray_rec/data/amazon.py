"""Raw Amazon 2018 review and metadata dumps -> items, interactions and samples, on Ray Data.

The per-record work runs as Ray Data tasks: each task reads one byte range of a plain JSON-lines
file (a gzip file is read by one task: it cannot be split), decodes UTF-8, parses JSON, validates
the fields and applies the per-record filters. The global steps need every record at once and
work on compact columns in the driver: iterative k-core, ordering, numbering and splitting
(1,000,000 interactions are ~30 MB there).

MiniOneRec's rules (``data/amazon18_data_process.py`` in that repository):

* metadata: an item needs a title without HTML tags; ``&quot;``/``&amp;`` entities are decoded and
  surrounding spaces and quotes stripped; it must be longer than 1 character and have at most
  ``max_title_words`` space-separated words. With repeated ASINs the last valid line wins;
* reviews: ``window_start <= unixReviewTime <= window_end`` (UTC month or day starts);
* iterative k-core: drop users with fewer than ``user_k`` and items with fewer than ``item_k``
  reviews until nothing changes (repeated user-item pairs count, as in MiniOneRec);
* users are numbered by first appearance in the review file, each user's reviews sorted by time
  (ties keep file order), items numbered by first appearance in that order;
* one sample per review after a user's first (history = previous <= N items), then either all samples
  sorted by target time and cut 8:1:1, or leave-one-out.

Output does not depend on the number of blocks: every record carries its line number and the
driver orders by it. ``preprocess_amazon(AmazonConfig(reviews=..., meta=...)) -> Loaded``.
"""

from __future__ import annotations

import datetime
import gzip
import html
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_rec.data.config import AmazonConfig
from ray_rec.data.loaders import Loaded, items_table
from ray_rec.data.samples import build_splits, interactions_table
from ray_rec.errors import InputError, at
from ray_rec.nodecache import input_info, open_input

_TAG = re.compile(r"<[^>]+>")


def month_start(text: str) -> int | None:
    """``"2016-10"`` or ``"2016-10-05"`` -> unix seconds at 00:00 UTC; empty -> None."""
    if not text:
        return None
    parts = [int(p) for p in text.split("-")] + [1]
    return int(datetime.datetime(parts[0], parts[1], parts[2], tzinfo=datetime.UTC).timestamp())


def is_gzip(path: str | Path) -> bool:
    with open_input(path) as fh:
        return fh.read(2) == b"\x1f\x8b"


def next_line_start(fh, pos: int) -> int:
    """Offset just past the first newline at or after ``pos`` (the end of the file when there is none),
    read in blocks: what ``readline`` gives, on files that lack it (pyarrow's object-store files)."""
    fh.seek(pos)
    while True:
        block = fh.read(1 << 16)
        if not block:
            return pos
        found = block.find(b"\n")
        if found >= 0:
            return pos + found + 1
        pos += len(block)


def byte_ranges(path: str | Path, num_blocks: int) -> list[dict]:
    """Read tasks for one file (a local path or a URI): byte ranges cut at line ends, each with its
    first line number."""
    path = str(path)
    info = input_info(path)
    if info is None or info[0] != "file":
        raise InputError(f"{path}: file not found")
    if is_gzip(path):
        return [{"path": path, "start": 0, "end": -1, "first_line": 1}]
    size = info[1]
    cuts = [0]
    with open_input(path) as fh:
        for k in range(1, num_blocks):
            cuts.append(min(next_line_start(fh, max(size * k // num_blocks, cuts[-1])), size))
    cuts.append(size)
    tasks, line = [], 1
    with open_input(path) as fh:
        for a, b in zip(cuts[:-1], cuts[1:], strict=False):
            tasks.append({"path": path, "start": a, "end": b, "first_line": line})
            fh.seek(a)
            line += fh.read(b - a).count(b"\n")
    return tasks


def iter_lines(task: dict) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of one read task; corrupt gzip -> InputError at the line reached."""
    path, line = task["path"], task["first_line"]
    if task["end"] < 0:
        try:
            with open_input(path) as raw_file, gzip.open(raw_file, "rb") as fh:
                for raw in fh:
                    yield line, raw
                    line += 1
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{at(path, line)} corrupt or truncated gzip ({exc})") from None
        return
    with open_input(path) as fh:
        fh.seek(task["start"])
        data = fh.read(task["end"] - task["start"])
    for raw in data.split(b"\n"):
        yield line, raw
        line += 1


def _records(task: dict) -> Iterator[tuple[int, dict]]:
    for line, raw in iter_lines(task):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{at(task['path'], line)} not UTF-8 text (byte {exc.start} of the line)") from None
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{at(task['path'], line)} not valid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise InputError(f"{at(task['path'], line)} expected a JSON object")
        yield line, rec


def _need(rec: dict, key: str, path: str, line: int, kind: type | tuple = str):
    if key not in rec:
        raise InputError(f"{at(path, line, key)} missing key")
    value = rec[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{at(path, line, key)} expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def parse_reviews(task: dict, start: int | None, end: int | None) -> pa.Table:
    """One read task of the review file -> (line, user, asin, time) of the reviews inside the window."""
    lines, users, asins, times = [], [], [], []
    for line, rec in _records(task):
        user = _need(rec, "reviewerID", task["path"], line)
        asin = _need(rec, "asin", task["path"], line)
        t = _need(rec, "unixReviewTime", task["path"], line, (int, str))
        try:
            t = int(t)
        except ValueError:
            raise InputError(f"{at(task['path'], line, 'unixReviewTime')} not an integer: {t!r}") from None
        if (start is not None and t < start) or (end is not None and t > end):
            continue
        lines.append(line)
        users.append(user)
        asins.append(asin)
        times.append(t)
    return pa.table({"line": pa.array(lines, pa.int64()), "user": pa.array(users, pa.string()),
                     "asin": pa.array(asins, pa.string()), "time": pa.array(times, pa.int64())})


def clean_title(title, max_words: int) -> str | None:
    """MiniOneRec's title rule: None when the item must be dropped, else the cleaned title."""
    if not isinstance(title, str) or _TAG.search(title):
        return None
    title = title.replace("&quot;", '"').replace("&amp;", "&").strip(" ").strip('"')
    if len(title) <= 1 or len(title.split(" ")) > max_words:
        return None
    return title


def clean_text(value) -> str:
    """Metadata text (a string or list of strings) without HTML tags, entities or extra spaces."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = html.unescape(_TAG.sub(" ", str(value or "")))
    return " ".join(text.split())


def _categories(value) -> list[str]:
    if isinstance(value, list) and value and isinstance(value[0], list):  # older nested format
        value = [c for group in value for c in group]
    if not isinstance(value, list):
        return []
    return [clean_text(c) for c in value if "</span>" not in str(c) and clean_text(c)]


def parse_meta(task: dict, max_words: int) -> pa.Table:
    """One read task of the metadata file -> its lines whose title passes :func:`clean_title`."""
    rows: dict[str, list] = {k: [] for k in ("line", "asin", "title", "description", "brand", "categories")}
    for line, rec in _records(task):
        asin = _need(rec, "asin", task["path"], line)
        title = clean_title(rec.get("title"), max_words)
        if title is None:
            continue
        for key, value in (("line", line), ("asin", asin), ("title", title),
                           ("description", clean_text(rec.get("description"))),
                           ("brand", clean_text(str(rec.get("brand") or "").replace("by\n", ""))),
                           ("categories", _categories(rec.get("category", rec.get("categories"))))):
            rows[key].append(value)
    return pa.table({"line": pa.array(rows["line"], pa.int64()), "asin": pa.array(rows["asin"], pa.string()),
                     "title": pa.array(rows["title"], pa.string()),
                     "description": pa.array(rows["description"], pa.string()),
                     "brand": pa.array(rows["brand"], pa.string()),
                     "categories": pa.array(rows["categories"], pa.list_(pa.string()))})


BLOCK = pa.schema([("kind", pa.string()), ("line", pa.int64()), ("user", pa.string()), ("asin", pa.string()),
                   ("time", pa.int64()), ("title", pa.string()), ("description", pa.string()),
                   ("brand", pa.string()), ("categories", pa.list_(pa.string()))])


def parse_block(batch, max_words: int, start: int | None, end: int | None) -> pa.Table:
    """Ray Data map over read tasks of both files -> rows of the BLOCK schema (unused fields null),
    so one Dataset carries reviews and metadata."""
    parts = []
    for task in _tasks(batch):
        t = parse_reviews(task, start, end) if task["kind"] == "reviews" else parse_meta(task, max_words)
        t = t.append_column("kind", pa.array([task["kind"]] * t.num_rows, pa.string()))
        parts.append(pa.table({n: t.column(n) if n in t.column_names else pa.nulls(t.num_rows, BLOCK.field(n).type)
                               for n in BLOCK.names}, schema=BLOCK))
    return pa.concat_tables(parts) if parts else BLOCK.empty_table()


def _tasks(batch) -> list[dict]:
    cols = batch if isinstance(batch, dict) else batch.to_pydict()
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in zip(cols, row, strict=False)} for row in zip(*cols.values(), strict=False)]


def _unwrap(exc: BaseException | None) -> InputError | None:
    """The InputError inside a Ray task failure (Ray wraps user exceptions), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc) is InputError:
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
    return None


def run_parse(cfg: AmazonConfig) -> tuple[pa.Table, pa.Table]:
    """Parse both dumps in one Ray Data run -> (reviews, meta) tables ordered by line number."""
    import ray

    tasks = [{**t, "kind": "reviews"} for t in byte_ranges(cfg.reviews, cfg.num_blocks)] + \
            [{**t, "kind": "meta"} for t in byte_ranges(cfg.meta, cfg.num_blocks)]
    ctx = ray.data.DataContext.get_current()
    before, ctx.raise_original_map_exception = ctx.raise_original_map_exception, True
    try:
        ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
        ds = ds.map_batches(parse_block, batch_size=1, batch_format="pyarrow",
                            fn_kwargs={"max_words": cfg.max_title_words, "start": month_start(cfg.window_start),
                                       "end": month_start(cfg.window_end)})
        table = pa.concat_tables([BLOCK.empty_table()] + [t.cast(BLOCK) for t in ray.get(ds.to_arrow_refs())])
    except Exception as exc:
        found = _unwrap(exc)
        if found is not None:
            raise InputError(str(found)) from None
        raise
    finally:
        ctx.raise_original_map_exception = before
    out = []
    for kind, names in (("reviews", ["line", "user", "asin", "time"]),
                        ("meta", ["line", "asin", "title", "description", "brand", "categories"])):
        part = table.filter(pc.equal(table.column("kind"), kind)).select(names)
        out.append(part.sort_by("line").combine_chunks())
    return out[0], out[1]


def k_core(user: np.ndarray, item: np.ndarray, user_k: int, item_k: int) -> np.ndarray:
    """Boolean mask (n,) of the interactions left by iterative k-core on codes ``user``/``item`` (n,)."""
    keep = np.ones(len(user), dtype=bool)
    while True:
        uc = np.bincount(user[keep], minlength=user.max() + 1 if len(user) else 0)
        ic = np.bincount(item[keep], minlength=item.max() + 1 if len(item) else 0)
        new = keep & (uc[user] >= user_k) & (ic[item] >= item_k)
        if new.sum() == keep.sum():
            return keep
        keep = new


def first_appearance_codes(values: np.ndarray) -> np.ndarray:
    """Codes 0..k-1 numbering distinct values by first appearance. (n,) -> (n,)"""
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inverse.reshape(-1)]


def preprocess_amazon(cfg: AmazonConfig, max_history: int = 10, split: str = "ratio",
                      num_cpus: int | None = None) -> Loaded:
    """Raw dumps -> :class:`Loaded` by MiniOneRec's rules (see the module docstring)."""
    from ray_rec.runtime import init_ray

    init_ray(num_cpus=num_cpus, dashboard=False)
    reviews, meta = run_parse(cfg)
    n_window = reviews.num_rows
    # last valid metadata line per ASIN
    asins = meta.column("asin").to_numpy(zero_copy_only=False)
    _, last_rev = np.unique(asins[::-1], return_index=True)
    meta = meta.take(np.sort(len(asins) - 1 - last_rev))
    reviews = reviews.filter(pc.is_in(reviews.column("asin"), meta.column("asin")))
    n_titled = reviews.num_rows
    u_raw = reviews.column("user").to_numpy(zero_copy_only=False)
    i_raw = reviews.column("asin").to_numpy(zero_copy_only=False)
    if len(u_raw):
        keep = k_core(np.unique(u_raw, return_inverse=True)[1].reshape(-1),
                      np.unique(i_raw, return_inverse=True)[1].reshape(-1), cfg.user_k, cfg.item_k)
    else:
        keep = np.zeros(0, dtype=bool)
    if not keep.any():
        raise InputError(f"{cfg.reviews}: no review survives the window, title and k-core filters "
                         f"({n_window} in the window, {n_titled} with a valid title)")
    user = first_appearance_codes(u_raw[keep])
    time = reviews.column("time").to_numpy()[keep]
    order = np.lexsort((np.arange(len(user)), time, user))
    asin_sorted = i_raw[keep][order]
    item = first_appearance_codes(asin_sorted)
    inter = interactions_table(user[order], item, time[order])
    items = _items(meta, asin_sorted, item)
    info = {"reviews_in_window": n_window, "reviews_with_title": n_titled,
            "reviews_after_k_core": int(keep.sum()), "items_with_valid_title": meta.num_rows}
    return Loaded(items, inter, build_splits(inter, max_history, split), info)


def _items(meta: pa.Table, asin_sorted: np.ndarray, item: np.ndarray) -> pa.Table:
    """Items table in item-id order from the metadata rows of the kept ASINs."""
    first = np.unique(item, return_index=True)[1]
    kept_asins = asin_sorted[first]  # asin of item 0, 1, ...
    row_of = {a: i for i, a in enumerate(meta.column("asin").to_pylist())}
    m = meta.take(pa.array([row_of[a] for a in kept_asins], pa.int64())).to_pydict()
    rows = [(i, m["title"][i], m["description"][i], m["brand"][i], m["categories"][i]) for i in range(len(kept_asins))]
    return items_table(rows)
