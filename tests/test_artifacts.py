"""The one reader per artifact: a missing file, column or type fails with a message naming the file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_rec import artifacts
from ray_rec.errors import InputError
from ray_rec.io import write_parquet
from ray_rec.schema import SAMPLES


def test_missing_file_names_it_and_the_stage_that_writes_it(tmp_path):
    for read, stage in ((artifacts.read_samples, r"data stage first \(`ray-rec data prepare`\)"),
                        (artifacts.read_codes, r"SID stage first \(`ray-rec sid build`"),
                        (artifacts.read_embeddings, r"embedding stage first \(`ray-rec data embed`\)")):
        with pytest.raises(InputError, match=f"nope.parquet does not exist; run the {stage}"):
            read(tmp_path / "nope.parquet")


def test_samples_are_cast_to_the_schema(tmp_path):
    path = tmp_path / "samples_train.parquet"
    pq.write_table(pa.table({"target": pa.array([3, 4], pa.int32()), "user_id": [0, 1],
                             "history": pa.array([[1], [2, 3]], pa.list_(pa.int32())), "extra": ["a", "b"]}), path)
    table = artifacts.read_samples(path)
    assert table.schema == SAMPLES and table.column("history").to_pylist() == [[1], [2, 3]]


def test_bad_columns_are_refused(tmp_path):
    path = tmp_path / "samples_test.parquet"
    pq.write_table(pa.table({"user_id": [0], "history": [[1]]}), path)
    with pytest.raises(InputError, match=r"samples_test.parquet: field 'target': missing column; samples have columns"):
        artifacts.read_samples(path)
    pq.write_table(pa.table({"user_id": ["u0"], "history": [[1]], "target": [2]}), path)
    with pytest.raises(InputError, match="samples_test.parquet: does not match the samples schema"):
        artifacts.read_samples(path)
    path.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        artifacts.read_samples(path)


def test_items_read_only_the_columns_asked_for(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": [0, 1], "title": ["a", None]}), path)  # no text columns needed
    assert artifacts.read_items(path, columns=["item_id", "title"]).column("title").to_pylist() == ["a", None]
    with pytest.raises(InputError, match="field 'description': missing column"):
        artifacts.read_items(path)


def test_codes_refuse_an_empty_sid(tmp_path):
    path = tmp_path / "codes.parquet"
    write_parquet(pa.table({"item_id": [0, 1, 2], "codes": [[1, 2], [3, 4, 0], []]}), path)
    with pytest.raises(InputError, match=r"codes.parquet:2: field 'codes': item 2 has an empty SID"):
        artifacts.read_codes(path)


def test_embeddings_come_back_as_a_matrix_and_ragged_ones_are_refused(tmp_path):
    path = tmp_path / "embeddings.parquet"
    pq.write_table(pa.table({"item_id": [2, 0], "embedding": [[1.0, 2.0], [3.0, 4.0]]}), path)
    ids, x = artifacts.read_embeddings(path)
    assert ids.tolist() == [2, 0] and x.dtype == np.float32 and x.tolist() == [[1, 2], [3, 4]]
    pq.write_table(pa.table({"item_id": [0, 1], "embedding": [[1.0, 2.0], [1.0]]}), path)
    with pytest.raises(InputError, match=r"embeddings.parquet:1: field 'embedding'.*dimension 1"):
        artifacts.read_embeddings(path)
