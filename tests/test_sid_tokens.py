import pytest

from ray_rec.sid.tokens import parse_sid, render_sid, sid_token, vocabulary


def test_round_trip():
    assert render_sid([236, 231, 226]) == "<a_236><b_231><c_226>"
    assert parse_sid("<a_236><b_231><c_226>") == [236, 231, 226]
    assert parse_sid(["<a_1>", "<b_2>", "<c_3>", "<d_0>"]) == [1, 2, 3, 0]


def test_bad_tokens():
    with pytest.raises(ValueError, match="letter 'b'"):
        parse_sid("<a_1><c_2>")
    with pytest.raises(ValueError, match="not a SID"):
        parse_sid("<a_1> junk")
    with pytest.raises(ValueError):
        sid_token(0, -1)


def test_vocabulary():
    assert vocabulary([2, 1]) == ["<a_0>", "<a_1>", "<b_0>"]
