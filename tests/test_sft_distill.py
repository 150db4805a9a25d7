"""Distillation from SASRec into the SFT model (ray_rec/train/distill.py): the per-level code
distributions against a brute-force sum, where the soft targets sit in the packed examples, the mixed
loss against a hand computation, training toward the teacher, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_runs import write_tiny_run

from ray_rec import artifacts
from ray_rec.baseline.sasrec import SASRec, encode_histories
from ray_rec.config import ConfigError, load_config
from ray_rec.errors import InputError
from ray_rec.lm.model import add_sid_tokens, build_model, train_bpe_tokenizer
from ray_rec.train import tasks
from ray_rec.train.batch import SFTBackend, collate, response_loss, tokens_per_micro_batch, train_step
from ray_rec.train.config import ModelSection, SFTConfig, TasksSection
from ray_rec.train.distill import Teacher, code_marginals
from ray_rec.train.run import prepare_inputs

# 6 items; item 5 has a fourth (de-duplication) level, as colliding SIDs get
CODES = {0: [1, 2, 3], 1: [1, 2, 4], 2: [1, 5, 0], 3: [6, 0, 2], 4: [6, 0, 3], 5: [1, 2, 3, 1]}
SAMPLES = tasks.Samples(users=[7, 7, 8], histories=[[0, 1], [0, 1, 3], [2]], targets=[3, 5, 4],
                        path="samples_train.parquet")


@pytest.fixture(scope="module")
def tok():
    t = train_bpe_tokenizer(["red tape", "blue glue", "Items the user bought, oldest first:"] * 5, vocab_size=300)
    add_sid_tokens(t, [8, 8, 8, 2])
    return t


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    model = SASRec(num_items=6, max_len=3, hidden=16, blocks=1, heads=2, dropout=0.0)
    with torch.no_grad():
        model.item_emb.weight.mul_(8)  # uneven item scores
    folder = model.save(tmp_path_factory.mktemp("sasrec") / "model")
    return Teacher(folder, CODES)


def brute_marginals(p: np.ndarray, codes: dict[int, list[int]], target: int, size: int) -> np.ndarray:
    depth = max(len(c) for c in codes.values())
    out = np.zeros((depth, size))
    true = codes[target]
    for level in range(len(true)):
        for item, row in codes.items():
            if len(row) > level and row[:level] == true[:level]:
                out[level, row[level]] += p[item]
        out[level] /= out[level].sum()
    return out


def test_code_marginals_equal_a_brute_force_sum():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=6)
    matrix = torch.full((6, 4), -1, dtype=torch.int64)
    for item, row in CODES.items():
        matrix[item, :len(row)] = torch.tensor(row)
    got = code_marginals(torch.tensor(p, dtype=torch.float32), matrix, torch.arange(6), 8).numpy()
    for target in range(6):
        np.testing.assert_allclose(got[target], brute_marginals(p[target], CODES, target, 8), atol=1e-6)
    assert np.all(got[:5, 3] == 0)  # items 0-4 have no fourth level


def test_soft_targets_sit_on_the_target_sid_tokens(tok, teacher):
    """Every SID token of a main-task target (not EOS, not the prompt) carries the teacher's
    distribution for its level, computed from SASRec's scores of the items before it."""
    sids = tasks.sid_token_ids(tok, CODES)
    cfg = TasksSection(sid_next=1.0, sid_seq=1.0, max_history=10)
    ex, _ = tasks.build_examples(tok, cfg, SAMPLES, CODES, {}, teacher=teacher)
    eos = int(tok.eos_token_id)
    for i in range(len(ex)):
        ids, labels = ex.get(i)
        s, e = ex.offsets[i], ex.offsets[i + 1]
        at = ex.soft_at[s:e]
        assert np.array_equal(at >= 0, (labels != -100) & (labels != eos))
        levels = ex.soft_level[at[at >= 0]]
        tokens = ex.level_tokens[levels]           # (rows, size) token id of each code
        q = ex.soft[at[at >= 0]]
        np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
        assert all(lab in row for lab, row in zip(labels[at >= 0], tokens, strict=True))
    # the sid_next example of the second sample: target 5 (4 levels) after history [0, 1, 3]
    row = next(i for i in range(len(ex)) if ex.task[i] == 0 and list(ex.get(i)[0][-5:-1]) == sids[5])
    with torch.no_grad():
        p = torch.softmax(teacher.model.score(encode_histories([[0, 1, 3]], 3))[0, 1:], -1).numpy()
    at = ex.soft_at[ex.offsets[row]:ex.offsets[row + 1]]
    np.testing.assert_allclose(ex.soft[at[at >= 0]], brute_marginals(p, CODES, 5, teacher.size), atol=1e-5)


def test_soft_rows_of_long_sequences_and_any_batch_size(teacher):
    """A sequence longer than SASRec's max_len (3) is scored in pieces; each target still gets the
    distribution of SASRec reading the newest max_len items before it, whatever the batch size."""
    seqs, n = [[0, 1, 3, 5], [2, 4], [1, 0, 2, 3, 4]], [3, 1, 4]
    rows = teacher.soft_rows(seqs, n)
    assert [len(q) for _, q in rows] == [3 + 3 + 4, 3, 3 + 3 + 3 + 3]  # item 5 has four levels
    assert rows[0][0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]
    teacher.batch_size, before = 1, teacher.batch_size
    try:
        for (la, a), (lb, b) in zip(rows, teacher.soft_rows(seqs, n), strict=True):
            np.testing.assert_array_equal(la, lb)
            np.testing.assert_allclose(a, b, rtol=1.3e-6, atol=1e-5)
    finally:
        teacher.batch_size = before
    with torch.no_grad():
        p = torch.softmax(teacher.model.score(encode_histories([[0, 2, 3]], 3))[0, 1:], -1).numpy()
    np.testing.assert_allclose(rows[2][1][-3:], brute_marginals(p, CODES, 4, teacher.size)[:3], atol=1e-5)


def test_mixed_loss_equals_the_hand_computed_mix(tok, teacher):
    cfg = TasksSection(sid_next=1.0, max_history=10)
    ex, _ = tasks.build_examples(tok, cfg, SAMPLES, CODES, {}, teacher=teacher)
    model = build_model(ModelSection(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1), tok).eval()
    pad, w = int(tok.pad_token_id), 0.3
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(30)  # far from uniform, so soft and hard terms differ
        plain, n = response_loss(model, collate(ex, range(len(ex)), pad))
        assert "soft_q" not in collate(ex, range(len(ex)), pad, 0.0)
        mixed, m = response_loss(model, collate(ex, range(len(ex)), pad, w))
        expected = 0.0
        for i in range(len(ex)):
            ids, labels = ex.get(i)
            logp = torch.log_softmax(model(input_ids=torch.from_numpy(ids[None].astype(np.int64))).logits[0, :-1], -1)
            at = ex.soft_at[ex.offsets[i]:ex.offsets[i + 1]][1:]
            for t, y in enumerate(labels[1:]):
                if y == -100:
                    continue
                hard = -float(logp[t, y])
                if at[t] < 0:
                    expected += hard
                    continue
                tokens = ex.level_tokens[ex.soft_level[at[t]]]
                soft = -float((torch.tensor(ex.soft[at[t]]) * logp[t, torch.tensor(tokens)]).sum())
                expected += (1 - w) * hard + w * soft
    assert int(n) == int(m)
    assert float(mixed) == pytest.approx(expected, rel=1e-4)
    assert float(mixed) != pytest.approx(float(plain), rel=1e-3)


def test_training_on_teacher_targets_moves_the_student_toward_them(tok, teacher):
    """With weight 1 the student learns the teacher's code distributions: the soft cross-entropy falls."""
    cfg = load_config(SFTConfig, None, ["train.backend=ddp", "train.global_batch_size=3", "train.micro_batch_size=3",
                                        "resources.workers=1", "train.lr=0.01", "distill.weight=1.0"])
    ex, _ = tasks.build_examples(tok, TasksSection(sid_next=1.0, max_history=10), SAMPLES, CODES, {}, teacher=teacher)
    model = build_model(ModelSection(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1), tok, seed=1)
    backend = SFTBackend(model, cfg, torch.device("cpu"), tokens_per_micro=tokens_per_micro_batch(ex, cfg))
    pad = int(tok.pad_token_id)

    def soft_loss() -> float:
        with torch.no_grad():
            return float(response_loss(model.eval(), collate(ex, range(3), pad, 1.0))[0])

    before = soft_loss()
    backend.train(True)
    for _ in range(30):
        train_step(backend, ex, np.arange(3), cfg, pad, np.diff(ex.offsets))
    assert soft_loss() < 0.8 * before


def test_prepare_inputs_attaches_the_run_sasrec(tmp_path):
    paths = write_tiny_run(tmp_path / "run")
    overrides = [f"run={paths.root}", "sid_method=rqkmeans", "model.hidden_size=16", "model.num_layers=1",
                 "model.num_heads=2", "model.num_kv_heads=1", "model.bpe_vocab_size=300", "distill.weight=0.5"]
    cfg = load_config(SFTConfig, None, overrides)
    with pytest.raises(InputError, match="baseline sasrec"):
        prepare_inputs(cfg)
    SASRec(num_items=48, max_len=5, hidden=16, blocks=1, heads=2).save(paths.sasrec_model)
    train = prepare_inputs(cfg)["train"]
    # every training sample's target SID (3 tokens) carries a soft target
    assert (train.soft_at >= 0).sum() == 3 * len(artifacts.read_samples(paths.samples("train")))


def test_bad_distill_settings_are_refused():
    with pytest.raises(ConfigError, match="distill.weight"):
        load_config(SFTConfig, None, ["distill.weight=1.5"])
    with pytest.raises(ConfigError, match="distill.temperature"):
        load_config(SFTConfig, None, ["distill.temperature=0"])
