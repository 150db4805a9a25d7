"""SID artifacts: MiniOneRec index.json in and out, the codes Parquet, reports of the shipped SIDs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ray_rec import artifacts
from ray_rec.errors import InputError
from ray_rec.schema import CODES
from ray_rec.sid.index_io import codes_arrays, codes_from_index_json, read_index_json, write_codes, write_index_json
from ray_rec.sid.report import sid_report


def test_shipped_industrial_index_reads_as_codes(shared_data):
    path = shared_data / "amazon18_industrial" / "Industrial_and_Scientific.index.json"
    table = codes_from_index_json(path)
    assert table.schema == CODES and table.num_rows == 3686
    assert table.column("item_id").to_pylist() == list(range(3686))
    assert table.column("codes")[0].as_py() == [236, 231, 226]
    _, codes = read_index_json(path)
    report = sid_report(codes, [256, 256, 256])
    assert report["collisions"]["distinct_sids"] == 3670          # the data README's count
    assert 0 < report["collisions"]["collision_rate"] < 0.005


@pytest.mark.parametrize("rel, levels", [("scientific/Scientific.index.rqvae_native.json", 4),
                                         ("beauty/Beauty.index.letter.json", 4)])
def test_other_shipped_indexes_read(shared_data, rel, levels):
    item_ids, codes = read_index_json(shared_data / rel)
    assert codes.shape == (len(item_ids), levels) and (codes >= 0).all()
    assert (np.diff(item_ids) > 0).all()


def test_round_trip_with_variable_length_dedup_level(tmp_path):
    ids = np.array([2, 0, 1, 10])
    codes = np.array([[1, 2, 0], [1, 2, 1], [3, 4, -1], [5, 6, -1]])
    write_codes(ids, codes, tmp_path / "codes.parquet")
    got_ids, got = codes_arrays(artifacts.read_codes(tmp_path / "codes.parquet"))
    assert got_ids.tolist() == [0, 1, 2, 10]
    assert got.tolist() == [[1, 2, 1], [3, 4, -1], [1, 2, 0], [5, 6, -1]]
    stored = pq.read_table(tmp_path / "codes.parquet").column("codes").to_pylist()
    assert stored[1] == [3, 4]                                     # no padding on disk
    write_index_json(ids, codes, tmp_path / "index.json")
    data = json.loads((tmp_path / "index.json").read_text())
    assert list(data) == ["0", "1", "2", "10"]                     # numeric order
    assert data["1"] == ["<a_3>", "<b_4>"] and data["2"] == ["<a_1>", "<b_2>", "<c_0>"]
    back_ids, back = read_index_json(tmp_path / "index.json")
    assert back_ids.tolist() == got_ids.tolist() and back.tolist() == got.tolist()


@pytest.mark.parametrize("content, match", [
    ('{"0": ["<a_1>", "<c_2>"]}', "field '0'.*letter 'b'"),
    ('{"x": ["<a_1>"]}', "field 'x'.*non-negative integers"),
    ('{"0": "<a_1>"}', "field '0'.*list of SID tokens"),
    ('{"0": ["<a_1>"],\n "1": [', "index.json:2: not valid JSON"),
    ("[]", "non-empty object"),
])
def test_bad_index_json_names_file_and_field(tmp_path, content, match):
    path = tmp_path / "index.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_index_json(path)


def test_missing_codes_file_says_what_to_run(tmp_path):
    with pytest.raises(InputError, match="ray-rec sid build"):
        artifacts.read_codes(tmp_path / "nope.parquet")
