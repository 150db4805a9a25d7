"""Bad input to the loaders: errors name the file, the line and the field; a failed prepare leaves
no artifact behind. (Raw-dump errors -- corrupt gzip, missing keys, non-UTF-8 -- are in test_data_amazon.)"""

from __future__ import annotations

import json

import pytest

from ray_rec import stages
from ray_rec.data.config import DataConfig, SyntheticConfig
from ray_rec.data.loaders import load_lcrec, load_minionerec
from ray_rec.data.prepare import run_prepare
from ray_rec.errors import InputError

HEADER = "user_id,history_item_title,item_title,history_item_id,item_id,history_item_sid,item_sid\n"


def write_minionerec(folder, valid_rows=None, items=None, header=HEADER):
    folder.mkdir(parents=True, exist_ok=True)
    items = items if items is not None else json.dumps(
        {str(i): {"title": f"t{i}", "description": "", "brand": "", "categories": ""} for i in range(4)}, indent=2)
    (folder / "X.item.json").write_text(items)
    rows = valid_rows or ['A1,"[\'t0\']",t1,[0],1,"[]",s\n', 'A2,"[\'t1\', \'t2\']",t3,"[1, 2]",3,"[]",s\n']
    (folder / "X.valid.csv").write_text(header + "".join(rows))
    (folder / "X.test.csv").write_text(header + "".join(rows))
    (folder / "X.sequences.jsonl").write_text(
        json.dumps({"user_id": "A1", "items": [0, 1], "n_prefix": 1}) + "\n"
        + json.dumps({"user_id": "A2", "items": [0, 1, 2, 3], "n_prefix": 3}) + "\n")
    return folder


def test_valid_fixture_loads(tmp_path):
    loaded = load_minionerec(write_minionerec(tmp_path / "ok"))
    assert loaded.samples["train"].to_pylist() == [{"user_id": 2, "history": [0], "target": 1},
                                                   {"user_id": 2, "history": [0, 1], "target": 2}]


def test_unknown_item_in_history(tmp_path):
    rows = ['A1,"[\'t0\']",t1,[0],1,"[]",s\n', 'A2,"[]",t3,"[1, 99]",3,"[]",s\n']
    with pytest.raises(InputError, match=r"X\.valid\.csv:3: field 'history_item_id': unknown item 99"):
        load_minionerec(write_minionerec(tmp_path / "d", rows))


def test_missing_column(tmp_path):
    header = "user_id,history_item_title,item_title,history_item_id,history_item_sid,item_sid\n"
    rows = ['A1,"[\'t0\']",t1,[0],"[]",s\n']
    with pytest.raises(InputError, match=r"X\.valid\.csv:1: field 'item_id': missing column"):
        load_minionerec(write_minionerec(tmp_path / "d", rows, header=header))


def test_list_cell_is_not_evaluated(tmp_path):
    rows = ['A1,"[]",t1,"__import__(\'os\').getcwd()",1,"[]",s\n']
    with pytest.raises(InputError, match=r"X\.valid\.csv:2: field 'history_item_id': not a list"):
        load_minionerec(write_minionerec(tmp_path / "d", rows))


def test_duplicate_item_ids(tmp_path):
    items = '{\n  "0": {"title": "a"},\n  "1": {"title": "b"},\n  "1": {"title": "c"}\n}\n'
    with pytest.raises(InputError, match=r"X\.item\.json:4: field 'item_id': duplicate item id '1'"):
        load_minionerec(write_minionerec(tmp_path / "d", items=items))


def test_not_utf8(tmp_path):
    folder = write_minionerec(tmp_path / "d")
    (folder / "X.item.json").write_bytes(b'{\n  "0": {"title": "a"},\n  "1": {"title": "caf\xe9"}\n}\n')
    with pytest.raises(InputError, match=r"X\.item\.json:3: not UTF-8"):
        load_minionerec(folder)


def test_missing_key_in_sequences(tmp_path):
    folder = write_minionerec(tmp_path / "d")
    (folder / "X.sequences.jsonl").write_text(json.dumps({"user_id": "A1", "items": [0, 1]}) + "\n")
    with pytest.raises(InputError, match=r"X\.sequences\.jsonl:1: field 'n_prefix': missing key"):
        load_minionerec(folder)


def test_lcrec_unknown_item(tmp_path):
    (tmp_path / "S.item.json").write_text(json.dumps({"0": {"title": "a"}, "1": {"title": "b"}}, indent=2))
    (tmp_path / "S.inter.json").write_text(json.dumps({"0": [0, 1, 0], "1": [1, 7, 0]}, indent=1))  # "1" is on line 7
    with pytest.raises(InputError, match=r"S\.inter\.json:7: field 'items': unknown item 7"):
        load_lcrec(tmp_path)


def test_failed_prepare_leaves_no_artifact(tmp_path):
    rows = ['A1,"[]",t1,"[5]",1,"[]",s\n']
    folder = write_minionerec(tmp_path / "d", rows)
    run = tmp_path / "run"
    with pytest.raises(InputError):
        run_prepare(DataConfig(run=str(run), source="minionerec", path=str(folder)))
    assert not run.exists() or not any(run.rglob("*.parquet"))
    # over a finished run: the failed attempt un-marks it, so nothing mixed can pass for done
    good = DataConfig(run=str(run), synthetic=SyntheticConfig(n_items=100, n_users=20))
    paths = run_prepare(good)
    assert stages.up_to_date("data", good)
    with pytest.raises(InputError):
        run_prepare(DataConfig(run=str(run), source="minionerec", path=str(folder)))
    assert not stages.up_to_date("data", good)
    assert not list(paths.data_dir.glob(".*.tmp"))


def test_train_csv_is_used_when_present(tmp_path):
    folder = write_minionerec(tmp_path / "full")
    (folder / "X.sequences.jsonl").unlink()
    (folder / "X.train.csv").write_text(HEADER + 'A2,"[]",t1,[0],1,"[]",s\nB7,"[]",t2,"[0, 1]",2,"[]",s\n')
    loaded = load_minionerec(folder)
    assert loaded.info["train_protocol"] == "train.csv"
    # a user id not of the A<digits> form makes every user numbered by first appearance
    assert loaded.samples["train"].to_pylist() == [{"user_id": 0, "history": [0], "target": 1},
                                                   {"user_id": 1, "history": [0, 1], "target": 2}]
    # each user's sequence is rebuilt: first history, then every target (train, valid, test in order)
    inter = loaded.interactions.to_pydict()
    user0 = [i for u, i in zip(inter["user_id"], inter["item_id"], strict=True) if u == 0]
    assert user0 == [0, 1, 3, 3]
