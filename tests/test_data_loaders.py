"""Loaders on ../shared/data: the documented counts, and rows checked field by field against the
source files (read here independently with csv/json)."""

from __future__ import annotations

import csv
import json

import pytest

from ray_rec import artifacts
from ray_rec.data.config import DataConfig
from ray_rec.data.loaders import load_beauty, load_lcrec, load_minionerec
from ray_rec.data.prepare import read_manifest, run_prepare

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def industrial(shared_data):
    return load_minionerec(shared_data / "amazon18_industrial")


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_industrial_counts_and_rows(industrial, shared_data):
    folder = shared_data / "amazon18_industrial"
    assert len(industrial.items) == 3686
    assert len(industrial.samples["valid"]) == 4532 and len(industrial.samples["test"]) == 4533
    # strict train: windows whose target lies inside items[:n_prefix]
    assert len(industrial.samples["train"]) == 10393
    for split in ("valid", "test"):
        source = csv_rows(folder / f"Industrial_and_Scientific.{split}.csv")
        ours = industrial.samples[split].to_pylist()
        for i in (0, 1, 2017, len(source) - 1):
            assert ours[i]["user_id"] == int(source[i]["user_id"][1:])
            assert ours[i]["history"] == json.loads(source[i]["history_item_id"])
            assert ours[i]["target"] == int(source[i]["item_id"])
    item_json = json.loads((folder / "Industrial_and_Scientific.item.json").read_text())
    items = industrial.items.to_pylist()
    for i in (0, 181, 3685):
        assert items[i]["item_id"] == i
        assert items[i]["title"] == item_json[str(i)]["title"]
        assert items[i]["brand"] == item_json[str(i)]["brand"]
    info = [line.split("\t") for line in (folder / "Industrial_and_Scientific.info.txt").read_text().splitlines()]
    for _, title, item_id in info[:50]:
        assert items[int(item_id)]["title"] == title
    # item 0's description is a Python list literal in the source; it is parsed, not kept as "['...']"
    assert items[0]["description"].startswith("Relay/CAPACITOR hard start kit")


def test_industrial_strict_train_windows(industrial, shared_data):
    seqs = [json.loads(line) for line in
            (shared_data / "amazon18_industrial/Industrial_and_Scientific.sequences.jsonl").read_text().splitlines()]
    a5741 = next(s for s in seqs if s["user_id"] == "A5741")  # n_prefix 8 -> 7 windows
    train = [r for r in industrial.samples["train"].to_pylist() if r["user_id"] == 5741]
    items = a5741["items"]
    assert [(r["history"], r["target"]) for r in train] == [(items[:t], items[t]) for t in range(1, 8)]
    assert not [r for r in industrial.samples["train"].to_pylist() if r["user_id"] == 4042]  # n_prefix 1


def test_industrial_train_plus_valid(shared_data):
    loaded = load_minionerec(shared_data / "amazon18_industrial", protocol="train+valid")
    assert len(loaded.samples["train"]) == 10393 + 4532


def test_scientific_counts_and_rows(shared_data):
    loaded = load_lcrec(shared_data / "scientific", max_history=20)
    inter = loaded.interactions
    assert len(set(inter.column("user_id").to_pylist())) == 8317
    assert len(loaded.items) == 4344 and len(inter) == 58492
    assert len(loaded.samples["train"]) == 58492 - 3 * 8317  # leave-one-out: n-3 windows per user
    source = json.loads((shared_data / "scientific/Scientific.inter.json").read_text())
    test = {r["user_id"]: r for r in loaded.samples["test"].to_pylist()}
    valid = {r["user_id"]: r for r in loaded.samples["valid"].to_pylist()}
    for user in ("0", "3", "8316"):
        seq = source[user]
        assert test[int(user)]["target"] == seq[-1] and test[int(user)]["history"] == seq[:-1][-20:]
        assert valid[int(user)]["target"] == seq[-2] and valid[int(user)]["history"] == seq[:-2][-20:]
    item = loaded.items.to_pylist()[0]
    assert item["categories"] == ["Industrial & Scientific", "Industrial Electrical", "Passive Components", "Capacitors"]


def test_beauty_counts_and_rows(shared_data):
    loaded = load_beauty(shared_data / "beauty")
    inter = loaded.interactions
    assert len(set(inter.column("user_id").to_pylist())) == 22363
    assert len(loaded.items) == 12101 and len(inter) == 198502
    # item index = first appearance of the ASIN: the result equals the published inter.json
    source = json.loads((shared_data / "beauty/Beauty.inter.json").read_text())
    users, items = inter.column("user_id").to_pylist(), inter.column("item_id").to_pylist()
    ours: dict[int, list[int]] = {}
    for u, i in zip(users, items, strict=False):
        ours.setdefault(u, []).append(i)
    assert all(ours[int(k)] == v for k, v in source.items())
    texts = dict(line.split(" ", 1) for line in
                 (shared_data / "beauty/Beauty.item_textual_id.idgenrec.txt").read_text().splitlines())
    first_asin = (shared_data / "beauty/Beauty.user_sequence.txt").read_text().split()[1]
    assert loaded.items.to_pylist()[0]["title"] == texts[first_asin].strip()


def test_prepare_writes_artifacts_and_skips_rerun(shared_data, tmp_path, capsys):
    cfg = DataConfig(run=str(tmp_path), source="lcrec", path=str(shared_data / "scientific"))
    paths = run_prepare(cfg)
    manifest = read_manifest(paths)
    assert manifest["counts"] == {"items": 4344, "users": 8317, "interactions": 58492, "samples_train": 33541,
                                  "samples_valid": 8317, "samples_test": 8317}
    assert set(manifest["sha256"]) == {"items.parquet", "interactions.parquet", "samples_train.parquet",
                                       "samples_valid.parquet", "samples_test.parquet"}
    assert manifest["config"]["source"] == "lcrec"
    assert artifacts.read_items(paths.items).column("text")[0].as_py().startswith("SUPCO SPP6")
    assert artifacts.read_samples(paths.samples("test")).schema.field("history").type.value_type.bit_width == 64
    mtime = paths.items.stat().st_mtime_ns
    run_prepare(cfg)
    assert "skipped" in capsys.readouterr().out and paths.items.stat().st_mtime_ns == mtime
