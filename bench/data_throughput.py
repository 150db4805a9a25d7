"""Data-stage throughput, measured side by side in one run.

1. Embedding the Industrial items (3,686, the items.text template): Ray Data ``map_batches`` over an
   actor pool against a plain single-process loop with the same encoder and batch size.
2. Raw Amazon preprocessing (``preprocess_amazon``) on a generated dump of 1,000,000 reviews written as
   plain JSON lines: interactions/s with 1 and with 4 read blocks, and peak memory (driver plus every
   Ray process it started).

    .venv/bin/python bench/data_throughput.py                       # full run (minutes)
    .venv/bin/python bench/data_throughput.py --reviews 100000 --items 1000   # quick look

Writes bench/results/data_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Timer, write_result  # noqa: E402
from ray_rec.runtime import init_ray, set_threads, setup_env  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class PeakRSS:
    """Samples the resident memory of this process and all its descendants (Ray's too) every 0.2 s."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.base = self._total()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _total(self) -> int:
        total = 0
        for p in [self.proc] + self.proc.children(recursive=True):
            try:
                total += p.memory_info().rss
            except Exception:  # process ended between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def bench_embedding(n_items: int, batch_size: int, actors: int) -> dict:
    import numpy as np

    from ray_rec.data.config import DEFAULT_TEMPLATE, EmbedConfig
    from ray_rec.data.embed import embed_texts, load_encoder
    from ray_rec.data.loaders import load_minionerec
    from ray_rec.data.samples import with_text
    from ray_rec.resources import Resources

    items = with_text(load_minionerec(SHARED / "amazon18_industrial").items, DEFAULT_TEMPLATE, 1000)
    texts = items.column("text").to_pylist()[:n_items]
    ids = np.arange(len(texts))
    cfg = EmbedConfig(batch_size=batch_size, max_length=128, resources=Resources(workers=actors))

    set_threads(actors)  # the loop may use every core the actors get
    with Timer() as load:
        encode = load_encoder("", "cpu", cfg.max_length)
    with Timer() as loop:
        for i in range(0, len(texts), batch_size):
            encode(texts[i:i + batch_size])
    got = []  # (arrival time, rows) of each streamed batch
    with Timer() as ray_time:
        embed_texts(ids, texts, cfg, lambda b, v: got.append((time.perf_counter(), len(b))))
    assert sum(n for _, n in got) == len(texts)
    # after the first batch arrived: actors are loaded, this is the steady rate
    steady = sum(n for _, n in got[1:]) / max(got[-1][0] - got[0][0], 1e-9) if len(got) > 1 else float("nan")
    out = {"items": len(texts), "batch_size": batch_size, "actors": actors, "loop_threads": actors,
           "encoder_load_s": round(load.seconds, 2),
           "loop_items_per_s": round(len(texts) / loop.seconds, 1),
           "ray_items_per_s_incl_actor_start": round(len(texts) / ray_time.seconds, 1),
           "ray_items_per_s_steady": round(steady, 1)}
    out["ratio_ray_over_loop"] = round(out["ray_items_per_s_incl_actor_start"] / out["loop_items_per_s"], 3)
    out["ratio_ray_steady_over_loop"] = round(steady / out["loop_items_per_s"], 3)
    return out


def write_dump(folder: Path, n_reviews: int) -> tuple[Path, Path, int]:
    """A raw 2018-format dump from the synthetic shop: ~n_reviews reviews and their metadata."""
    from ray_rec.data.config import SyntheticConfig
    from ray_rec.data.synthetic import generate_synthetic

    users = max(10, n_reviews // 12)  # sequences of 5..20 items, ~12.5 on average
    shop = generate_synthetic(SyntheticConfig(n_items=max(100, min(1_000_000, n_reviews // 10)), n_users=users))
    inter = shop.interactions.to_pydict()
    reviews, meta = folder / "reviews.json", folder / "meta.json"
    with open(reviews, "w") as fh:
        for u, i, t in zip(inter["user_id"], inter["item_id"], inter["timestamp"], strict=False):
            fh.write(json.dumps({"overall": 5.0, "reviewerID": f"U{u:07d}", "asin": f"B{i:09d}",
                                 "unixReviewTime": t, "reviewText": "Works as described, would buy again."}) + "\n")
    with open(meta, "w") as fh:
        for row in shop.items.to_pylist():
            fh.write(json.dumps({"asin": f"B{row['item_id']:09d}", "title": row["title"], "brand": row["brand"],
                                 "category": row["categories"], "description": [row["description"]]}) + "\n")
    return reviews, meta, len(inter["user_id"])


def bench_preprocess(n_reviews: int) -> dict:
    from ray_rec.data.amazon import preprocess_amazon
    from ray_rec.data.config import AmazonConfig

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        with Timer() as gen:
            reviews, meta, n = write_dump(Path(tmp), n_reviews)
        out.update(reviews=n, dump_mb=round(reviews.stat().st_size / 2**20, 1), generate_s=round(gen.seconds, 1))
        for blocks in (1, 4):
            cfg = AmazonConfig(reviews=str(reviews), meta=str(meta), window_start="", window_end="", num_blocks=blocks)
            with PeakRSS() as mem, Timer() as t:
                loaded = preprocess_amazon(cfg)
            out[f"blocks_{blocks}"] = {
                "seconds": round(t.seconds, 2), "interactions_per_s": round(n / t.seconds),
                "kept_interactions": len(loaded.interactions),
                "peak_rss_gib_driver_and_ray": round(mem.peak / 2**30, 2),
                "rss_gib_before": round(mem.base / 2**30, 2)}
        out["ratio_4_over_1_blocks"] = round(out["blocks_4"]["interactions_per_s"] / out["blocks_1"]["interactions_per_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reviews", type=int, default=1_000_000, help="reviews in the generated dump")
    parser.add_argument("--items", type=int, default=3686, help="Industrial items to embed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--skip-embedding", action="store_true")
    args = parser.parse_args()
    setup_env()
    init_ray(num_cpus=4, dashboard=False)
    results = {}
    if not args.skip_embedding:
        results["embedding"] = bench_embedding(args.items, args.batch_size, args.actors)
        print("embedding:", json.dumps(results["embedding"]))
    results["preprocess"] = bench_preprocess(args.reviews)
    print("preprocess:", json.dumps(results["preprocess"]))
    write_result("data_throughput", results)


if __name__ == "__main__":
    main()
