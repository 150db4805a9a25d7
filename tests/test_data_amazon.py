"""Raw Amazon 2018 preprocessing on a fixture written here: the output equals hand-computed samples
and splits, is byte-identical with 1 and 4 blocks and with gzip input, and bad input names file/line/field."""

from __future__ import annotations

import gzip
import json

import pytest

from ray_rec import artifacts
from ray_rec.data.config import AmazonConfig, DataConfig
from ray_rec.data.prepare import run_prepare
from ray_rec.errors import InputError

B = 1_500_000_000  # 2017-07-14, inside the default window 2016-10 .. 2018-11

META = [
    {"asin": "I1", "title": "Alpha Drill", "brand": "Acme", "category": ["Tools", "Drills"],
     "description": ["<b>Strong</b> drill"]},
    {"asin": "I2", "title": "Beta &amp; Bits", "brand": "Bitco", "category": ["Tools", "Bits"]},
    {"asin": "I3", "title": ' "Gamma Glue" ', "category": ["Adhesives"], "description": "Sticks &amp; holds"},
    {"asin": "I4", "title": '<span id="x">Bad</span>'},                       # HTML title: dropped
    {"asin": "I5", "brand": "NoTitle"},                                        # missing title: dropped
    {"asin": "I6", "title": "Delta Tape"},
    {"asin": "I7", "title": " ".join(["word"] * 21)},                          # 21 words: dropped
    {"asin": "I1", "title": "Alpha Drill v2", "brand": "Acme", "category": ["Tools", "Drills"],
     "description": ["Second listing"]},                                       # repeated ASIN: last valid wins
    {"asin": "I8", "title": "Eps"},
]

REVIEWS = [  # (user, asin, time offset); file order matters for ties
    ("U1", "I1", 100), ("U2", "I2", 100), ("U1", "I2", 200), ("U1", "I3", 200),  # tie: I2 before I3
    ("U2", "I1", 50), ("U2", "I3", 300), ("U3", "I4", 100), ("U3", "I1", 150),
    ("U4", "I8", 100), ("U5", "I8", 120), ("U5", "I6", 130),
    ("U1", "I6", 1_300_000_000 - B),   # 2011: outside the window
    ("U3", "I5", 160), ("U2", "I7", 170), ("U1", "I1", 400),
    ("U4", "I1", 2_000_000_000 - B),   # 2033: outside the window
    ("U6", "I2", 500), ("U6", "I3", 600), ("U6", "I1", 700), ("U6", "I2", 800), ("U6", "I3", 900),
]
# By hand, k=2: round 1 drops U3, U4 (one review each) and I6; round 2 then drops U5 and I8.
# Users by first appearance: U1=0, U2=1, U6=2. Items by first appearance in time order: I1=0, I2=1, I3=2.
# Sequences: 0: [0,1,2,0] @ 100,200,200,400; 1: [0,1,2] @ 50,100,300; 2: [1,2,0,1,2] @ 500..900.
RATIO = {  # all 9 samples (history <= 2) sorted by target time, cut at int(9*.8)=7 and int(9*.9)=8
    "train": [(1, [0], 1), (0, [0], 1), (0, [0, 1], 2), (1, [0, 1], 2), (0, [1, 2], 0), (2, [1], 2), (2, [1, 2], 0)],
    "valid": [(2, [2, 0], 1)],
    "test": [(2, [0, 1], 2)],
}
LEAVE_ONE_OUT = {
    "train": [(0, [0], 1), (2, [1], 2), (2, [1, 2], 0)],
    "valid": [(0, [0, 1], 2), (1, [0], 1), (2, [2, 0], 1)],
    "test": [(0, [1, 2], 0), (1, [0, 1], 2), (2, [0, 1], 2)],
}


def write_lines(path, records, compress=False):
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def write_fixture(folder, compress=False):
    suffix = ".json.gz" if compress else ".json"
    reviews = [{"reviewerID": u, "asin": a, "unixReviewTime": B + t, "overall": 5.0, "reviewText": "ok"}
               for u, a, t in REVIEWS]
    return (write_lines(folder / f"reviews{suffix}", reviews, compress),
            write_lines(folder / f"meta{suffix}", META, compress))


def prepare(tmp_path, name, reviews, meta, num_blocks=4, split="ratio"):
    cfg = DataConfig(run=str(tmp_path / name), source="amazon", max_history=2, split=split,
                     amazon=AmazonConfig(reviews=str(reviews), meta=str(meta), user_k=2, item_k=2,
                                         num_blocks=num_blocks))
    return run_prepare(cfg)


def rows(table):
    return [(r["user_id"], r["history"], r["target"]) for r in table.to_pylist()]


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("raw"))


def test_hand_computed_ratio_split(ray_start_2_cpus, tmp_path, fixture_files):
    paths = prepare(tmp_path, "run", *fixture_files)
    for split, expected in RATIO.items():
        assert rows(artifacts.read_samples(paths.samples(split))) == expected, split
    items = artifacts.read_items(paths.items).to_pylist()
    assert [i["title"] for i in items] == ["Alpha Drill v2", "Beta & Bits", "Gamma Glue"]
    assert items[0]["description"] == "Second listing" and items[0]["brand"] == "Acme"
    assert items[0]["categories"] == ["Tools", "Drills"]
    assert items[2]["description"] == "Sticks & holds"
    inter = artifacts.read_interactions(paths.interactions)
    assert inter.column("user_id").to_pylist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert inter.column("item_id").to_pylist() == [0, 1, 2, 0, 0, 1, 2, 1, 2, 0, 1, 2]
    assert inter.column("timestamp").to_pylist()[:4] == [B + 100, B + 200, B + 200, B + 400]


def test_leave_one_out(ray_start_2_cpus, tmp_path, fixture_files):
    paths = prepare(tmp_path, "loo", *fixture_files, split="leave_one_out")
    for split, expected in LEAVE_ONE_OUT.items():
        assert rows(artifacts.read_samples(paths.samples(split))) == expected, split


def test_blocks_and_gzip_give_identical_bytes(ray_start_2_cpus, tmp_path, fixture_files):
    gz = write_fixture(tmp_path, compress=True)
    runs = [prepare(tmp_path, "one", *fixture_files, num_blocks=1),
            prepare(tmp_path, "four", *fixture_files, num_blocks=4),
            prepare(tmp_path, "gz", *gz, num_blocks=4)]
    names = ["items.parquet", "interactions.parquet"] + [f"samples_{s}.parquet" for s in ("train", "valid", "test")]
    for name in names:
        blobs = {(p.data_dir / name).read_bytes() for p in runs}
        assert len(blobs) == 1, name


def test_bad_raw_input_names_file_line_field(ray_start_2_cpus, tmp_path, fixture_files):
    reviews, meta = fixture_files
    lines = reviews.read_bytes().splitlines(keepends=True)
    missing = tmp_path / "missing.json"
    missing.write_bytes(b"".join(lines[:2]) + b'{"reviewerID": "U9", "unixReviewTime": 1500000000}\n')
    with pytest.raises(InputError, match=r"missing\.json:3: field 'asin': missing key"):
        prepare(tmp_path, "e1", missing, meta)
    binary = tmp_path / "latin1.json"
    binary.write_bytes(b"".join(lines[:4]) + '{"reviewerID": "Ü"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.json:5: not UTF-8"):
        prepare(tmp_path, "e2", binary, meta)
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(gzip.compress(b"".join(lines * 50))[:300])
    with pytest.raises(InputError, match=r"cut\.json\.gz:\d+: corrupt or truncated gzip"):
        prepare(tmp_path, "e3", truncated, meta)
    bad_time = tmp_path / "time.json"
    bad_time.write_bytes(lines[0] + b'{"reviewerID": "U9", "asin": "I1", "unixReviewTime": "soon"}\n')
    with pytest.raises(InputError, match=r"time\.json:2: field 'unixReviewTime'"):
        prepare(tmp_path, "e4", bad_time, meta)
    # nothing half-written: failed runs leave no artifact
    assert not (tmp_path / "e1" / "data" / "items.parquet").exists()


def test_raw_dumps_are_read_from_object_storage(ray_start_2_cpus, s3_run, tmp_path, fixture_files):
    """Dumps in a bucket (one gzipped, one plain) give the very bytes of the same dumps on local disk:
    the Ray Data tasks open their byte ranges through pyarrow's filesystem, on whichever node they run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    reviews_gz = write_fixture(tmp_path, compress=True)[0]
    fs = s3_run.server.filesystem()
    for local, key in ((reviews_gz, "raw/reviews.json.gz"), (fixture_files[1], "raw/meta.json")):
        with fs.open_output_stream(f"{s3_run.bucket}/{key}", compression=None) as out:  # bytes as they are
            out.write(local.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, with these variables
    cmd = [str(Path(sys.executable).parent / "ray-rec"), "data", "prepare", "--run", str(tmp_path / "from_s3"),
           "--source", "amazon", "--set", "max_history=2", "--set", "amazon.user_k=2", "--set", "amazon.item_k=2",
           "--set", "amazon.num_blocks=4", "--set", f"amazon.reviews=s3://{s3_run.bucket}/raw/reviews.json.gz",
           "--set", f"amazon.meta=s3://{s3_run.bucket}/raw/meta.json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = prepare(tmp_path, "from_disk", *fixture_files)
    for name in ["items.parquet", "interactions.parquet"] + [f"samples_{s}.parquet" for s in ("train", "valid", "test")]:
        assert (tmp_path / "from_s3" / "data" / name).read_bytes() == (local.data_dir / name).read_bytes(), name
    record = json.loads((tmp_path / "from_s3" / "data" / "stage.json").read_text())
    assert sorted(record["inputs"]) == [f"s3://{s3_run.bucket}/raw/meta.json", f"s3://{s3_run.bucket}/raw/reviews.json.gz"]
    assert "missing" not in record["inputs"].values()
