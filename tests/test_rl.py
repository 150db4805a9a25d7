"""GRPO: the reward and loss math by hand, rollouts against the trie and the search's own scores, and
one real run under Ray Train (2 workers, DeepSpeed ZeRO-2 over gloo) that makes the right items likelier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_evaluate import make_run
from tiny_runs import write_tiny_run

from ray_rec import artifacts
from ray_rec.config import load_config
from ray_rec.errors import InputError
from ray_rec.lm.checkpoint import load_sft_model, read_meta
from ray_rec.lm.prompts import encode_prompt, encode_text, response_text
from ray_rec.rl.config import RLConfig
from ray_rec.rl.grpo import completion_logprobs, grpo_loss, rollout, sid_token_mask, target_nodes
from ray_rec.rl.rewards import cf_reward, group_advantages, ranking_reward, rule_reward
from ray_rec.sid.trie import SIDTrie
from ray_rec.train.config import SFTConfig

CONFIGS = Path(__file__).resolve().parents[1] / "jobs" / "configs"


# ---------------------------------------------------------------- rewards and advantages

def test_rewards_equal_hand_computed_values():
    items = np.array([[4, 7, 9, 2], [1, 3, 5, 6]])
    targets = np.array([9, 8])                      # found at rank 2 in group 0; missed in group 1
    assert rule_reward(items, targets).tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]
    w = 1 / np.log2(np.array([0, 1, 3]) + 2.0)      # discounts of the wrong ranks 0, 1, 3
    expected = [-w[0] / w.sum(), -w[1] / w.sum(), 1.0, -w[2] / w.sum()]
    got = ranking_reward(items, targets)
    assert got[0].tolist() == pytest.approx(expected)
    assert got[0].sum() == pytest.approx(0.0)       # +1 for the hit, -1 spread over the misses
    assert got[1].tolist() == [0, 0, 0, 0]          # a missed group is not penalised
    probs = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert cf_reward(probs, np.array([[3, -1, 0]])).tolist() == [[0.4, 0.0, 0.1]]


def test_group_advantages_are_standardised_per_group():
    rewards = np.array([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [3.0, 1.0, 2.0, 2.0]])
    adv = group_advantages(rewards)
    assert np.allclose(adv.mean(axis=1), 0.0)
    assert np.allclose(adv[[0, 2]].std(axis=1), 1.0, atol=1e-3)
    assert np.all(adv[1] == 0.0)                    # all alike: nothing to learn from this group
    assert adv[0, 0] > 0 > adv[0, 1] and adv[2, 0] > adv[2, 2] > adv[2, 1]


def test_batch_and_no_scaling_keep_a_small_dense_reward_small():
    # a group that found the item (reward 1) beside a group that missed, ranked by a dense reward 100x smaller
    rewards = np.array([[1.0, 0.0, 0.0, 0.0], [0.004, 0.003, 0.002, 0.001]])
    group = group_advantages(rewards, "group")
    assert np.abs(group[1]).max() > 0.5 * np.abs(group[0]).max()    # per-group scaling: nearly as loud
    none = group_advantages(rewards, "none")
    assert np.allclose(none, rewards - rewards.mean(axis=1, keepdims=True))
    batch = group_advantages(rewards, "batch")
    assert np.allclose(batch, none / (rewards.std() + 1e-4))
    assert np.abs(batch[1]).max() < 0.01 * np.abs(batch[0]).max()   # the missed group only nudges
    with pytest.raises(ValueError, match="scale"):
        group_advantages(rewards, "global")


def test_grpo_loss_moves_probability_toward_positive_advantages():
    logits = torch.zeros(2, 1, 3, requires_grad=True)       # two rollouts of one token over 3 choices
    tokens = torch.tensor([[0], [1]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    for _ in range(20):
        logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
        loss, stats = grpo_loss(logp, None, torch.tensor([1.0, -1.0]), mask, beta=0.0)
        assert stats["kl"] == 0.0 and loss.item() == pytest.approx(0.0, abs=1e-6)  # ratio 1: value is -mean(A)
        logits.grad = None
        loss.backward()
        with torch.no_grad():
            logits -= 0.5 * logits.grad
    probs = torch.softmax(logits, -1)
    assert probs[0, 0, 0] > 0.6 and probs[1, 0, 1] < 0.2


def test_kl_penalty_is_zero_at_the_reference_and_pulls_back_toward_it():
    ref = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0]]), -1)[:, :1]
    mask = torch.ones(1, 1, dtype=torch.bool)
    same = ref.clone().requires_grad_(True)
    _, stats = grpo_loss(same, ref, torch.zeros(1), mask, beta=0.1)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-7)
    drifted = (ref - 0.5).requires_grad_(True)               # the policy now finds the token less likely
    loss, stats = grpo_loss(drifted, ref, torch.zeros(1), mask, beta=0.1)
    loss.backward()
    assert stats["kl"] > 0 and drifted.grad.item() < 0      # descending raises log p back toward the reference


def test_sid_token_mask_stops_at_the_first_eos():
    assert sid_token_mask(torch.tensor([[5, 6, 7, 0, 0], [5, 6, 0, 9, 0]]), eos_id=0).int().tolist() == \
        [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]


# ---------------------------------------------------------------- rollouts on a real (tiny) model

def test_rollouts_are_distinct_valid_items_scored_as_the_model_scores_them(tmp_path):
    paths = make_run(tmp_path / "run", n_items=40)
    model, tok = load_sft_model(paths.sft_model())
    table = artifacts.read_codes(paths.codes("rqkmeans"))
    item_ids, codes = table.column("item_id").to_numpy(), table.column("codes").to_pylist()
    trie = SIDTrie.from_tokenizer(codes, tok, item_ids=item_ids)
    codes_of = dict(zip(item_ids.tolist(), codes, strict=True))
    prompts = [encode_prompt(tok, [codes_of[i] for i in h]) for h in ([1, 2], [3], [4, 5, 6])]
    roll = rollout(model, prompts, trie, group=8, pad_id=tok.pad_token_id)
    assert roll.valid.all() and roll.items.shape == (3, 8)
    for row in range(3):
        assert len(set(roll.items[row].tolist())) == 8                  # distinct items
        assert all(list(codes_of[int(i)]) in codes for i in roll.items[row])
        assert np.all(np.diff(roll.scores[row]) <= 1e-6)                 # best first
    # the loss sees exactly the probabilities the search ranked by: summed SID-token log-probs
    logp = completion_logprobs(model, roll.input_ids, roll.attention_mask, roll.completions)
    mask = sid_token_mask(roll.completions.reshape(-1, roll.completions.shape[-1]), tok.eos_token_id)
    summed = (logp * mask).sum(-1).reshape(3, 8).detach().numpy()
    assert np.allclose(summed, roll.scores, atol=1e-4)
    # a target's node is the node its rollout ends on
    tn = target_nodes(trie, [encode_text(tok, response_text(codes_of[int(i)])) for i in roll.items[:, 0]])
    assert (tn == roll.nodes[:, 0]).all()


def test_shipped_rl_configs_load_and_bad_ones_are_refused():
    for name in ("rl.yaml", "rl_smoke.yaml"):
        cfg = load_config(RLConfig, CONFIGS / name)
        assert cfg.train.global_batch_size % (cfg.resources.workers * cfg.train.micro_batch_size) == 0
    cfg = load_config(RLConfig, None, ["train.lr=3e-4"])
    assert cfg.train.lr == 3e-4 and cfg.train.min_lr_ratio == 1.0   # RL's own defaults survive an override
    for bad in (["grpo.group_size=1"], ["grpo.eval_k=30", "grpo.eval_beams=20"], ["train.global_batch_size=10"]):
        with pytest.raises(Exception, match="grpo|global_batch_size"):
            load_config(RLConfig, None, bad)


def test_missing_model_is_a_clear_error(tmp_path):
    from ray_rec.rl.run import model_dir_of

    with pytest.raises(InputError, match="config.json missing"):
        model_dir_of(load_config(RLConfig, None, [f"run={tmp_path}"]))


# ---------------------------------------------------------------- a real run under Ray Train

SFT_TINY = ["model.hidden_size=32", "model.num_heads=4", "model.num_kv_heads=2", "model.bpe_vocab_size=300",
            "train.global_batch_size=16", "train.micro_batch_size=16", "train.warmup_steps=2", "train.lr=5e-3",
            "train.eval_every=0", "train.backend=ddp", "resources.workers=1", "resources.cpus_per_worker=1",
            "resources.threads_per_worker=2", "sid_method=rqkmeans", "tasks.sid_next=1"]


def trained_users_ndcg(model_dir: Path, paths, n: int = 64, beams: int = 16) -> float:
    """NDCG@``beams`` of the first ``n`` training samples' targets in the model's constrained ranking:
    what GRPO optimises (the right item high among the ``beams`` rollouts)."""
    from ray_rec.lm.inputs import samples_with_sids
    from ray_rec.metrics import hr_ndcg, ranks_from_lists
    from ray_rec.sid.beam import constrained_beam_search

    model, tok = load_sft_model(model_dir)
    table = artifacts.read_codes(paths.codes("rqkmeans"))
    item_ids, codes = table.column("item_id").to_numpy(), table.column("codes").to_pylist()
    codes_of = dict(zip(item_ids.tolist(), codes, strict=True))
    samples = samples_with_sids(artifacts.read_samples(paths.samples("train")), item_ids, paths.samples("train"), n)
    prompts = [encode_prompt(tok, [codes_of[i] for i in h]) for h in samples.column("history").to_pylist()]
    trie = SIDTrie.from_tokenizer(codes, tok, item_ids=item_ids)
    result = constrained_beam_search(model, tok, prompts, trie, num_beams=beams, k=beams)
    ranks = ranks_from_lists(result.items, samples.column("target").to_numpy())
    return hr_ndcg(ranks, [beams])[f"ndcg@{beams}"]


@pytest.mark.ray
@pytest.mark.slow
def test_grpo_under_ray_train_makes_right_items_likelier_and_survives_a_killed_worker(ray_start_2_cpus, tmp_path):
    from ray_rec.rl.run import run_rl
    from ray_rec.train.run import run_sft

    paths = write_tiny_run(tmp_path / "run")
    run_sft(load_config(SFTConfig, None, [f"run={paths.root}", "name=sft", "train.max_steps=60", *SFT_TINY]))
    cfg = load_config(RLConfig, None, [
        f"run={paths.root}", "grpo.group_size=16", "grpo.reward=ranking", "grpo.beta=0.01", "grpo.eval_beams=8",
        "grpo.eval_k=5", "grpo.max_prompts=64", "train.backend=deepspeed", "train.global_batch_size=8",
        "train.micro_batch_size=2", "train.epochs=4", "train.max_steps=16", "train.eval_every=8", "train.lr=1e-3",
        "train.warmup_steps=0", "train.log_every=4", "resources.workers=2", "resources.cpus_per_worker=1",
        "train.crash_at_step=10", "train.crash_rank=1", "train.max_failures=1"])
    out = run_rl(cfg)

    # worker 1 died at step 10; the group restarted from the step-8 checkpoint and finished the run
    assert (paths.rl_dir("grpo") / "crash_marker").is_file(), "the injected fault never fired"
    final = json.loads((paths.rl_dir("grpo") / "checkpoint_000016" / "trainer_state.json").read_text())
    assert final["resumed_at"] == [8] and [r["step"] for r in final["train"]] == list(range(1, 17))

    history = json.loads((paths.rl_dir("grpo") / "history.json").read_text())
    assert [v["step"] for v in history["valid"]] == [0, 8, 16]
    assert len(history["train"]) == 16 and all(np.isfinite(r["loss"]) for r in history["train"])
    assert max(r["hit_rate"] for r in history["train"]) > 0      # some rollout found the right item
    # the policy learnt what it was rewarded for: on the users it trained on, the right item ranks higher
    # (on this 60-user catalogue the valid users do not gain: 64 users are too few to generalise from)
    before, after = trained_users_ndcg(paths.sft_model(), paths), trained_users_ndcg(out, paths)
    assert after > 1.3 * before, (before, after)
    meta = read_meta(out)
    assert meta["sid_method"] == "rqkmeans" and meta["rl"]["steps"] == 16
    assert (paths.rl_dir("grpo") / "curves.png").stat().st_size > 0
    stage = json.loads((paths.rl_dir("grpo") / "stage.json").read_text())
    assert stage["steps"] == 16
    assert run_rl(cfg) == out                                     # a finished stage is skipped


def test_cf_reward_adds_sasrec_probabilities_of_the_rolled_out_items(tmp_path):
    from ray_rec.baseline.sasrec import SASRec
    from ray_rec.rl.loop import SASRecScorer, rewards_of

    torch.manual_seed(0)
    SASRec(num_items=12, max_len=5, hidden=16, blocks=1, heads=2).save(tmp_path / "sasrec")
    scorer = SASRecScorer(str(tmp_path / "sasrec"), torch.device("cpu"))
    probs = scorer([[1, 2, 3], [7]])
    assert probs.shape == (2, 12) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    nodes = np.array([[10, 11, 12], [20, 21, 22]])     # SIDs of the beams; the targets' SIDs are 11 and 99
    items = np.array([[4, 5, 6], [0, 1, -1]])
    valid = np.array([[True, True, True], [True, True, False]])
    cfg = load_config(RLConfig, None, ["grpo.reward=rule", "grpo.cf_weight=0.5"])
    got = rewards_of(cfg, nodes, items, valid, np.array([11, 99]), probs)
    assert got[0].tolist() == pytest.approx([0.5 * probs[0, 4], 1 + 0.5 * probs[0, 5], 0.5 * probs[0, 6]])
    assert got[1, :2].tolist() == pytest.approx([0.5 * probs[1, 0], 0.5 * probs[1, 1]])
    assert got[1, 2] == pytest.approx(got[1, :2].min())   # an invalid beam gets the group's lowest reward
