"""SFT under Ray Train on 2 CPU workers with DeepSpeed ZeRO-2, for real, on a tiny generated run folder.

Three ``TorchTrainer`` runs are shared between the assertions (DeepSpeed start-up is slow):

* ``zero2``: 8 steps, then the same name again with 16 steps (resumes from step 8): the loss falls,
  every parameter changed, the exported model reloads to the logits the worker computed, the
  artifacts (ray_rec_sft.json, loss.png, stage.json) are written and a finished stage is skipped;
* ``freeze_crash``: ``model.freeze_base`` with worker 1 killed (``os._exit``) at step 3: the run
  restarts from its step-2 checkpoint and finishes; only the new SID token rows moved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import write_tiny_run

from ray_rec.config import load_config
from ray_rec.lm.checkpoint import load_sft_model, read_meta
from ray_rec.lm.model import build_model, first_sid_id
from ray_rec.train.batch import probe_logits
from ray_rec.train.config import SFTConfig
from ray_rec.train.run import inputs_dir, prepare_inputs, run_sft

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["model.hidden_size=32", "model.num_heads=4", "model.num_kv_heads=2", "model.bpe_vocab_size=300",
        "train.global_batch_size=16", "train.micro_batch_size=4", "train.warmup_steps=2", "train.lr=5e-3",
        "train.log_every=4", "resources.workers=2", "resources.cpus_per_worker=1", "sid_method=rqkmeans"]


def state_of(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def init_params(cfg: SFTConfig) -> dict[str, torch.Tensor]:
    """The worker's initial weights (same tokenizer, same seed)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(inputs_dir(cfg) / "tokenizer")
    return {n: p.detach().clone() for n, p in build_model(cfg.model, tok, seed=cfg.train.seed).named_parameters()}


@pytest.fixture(scope="module")
def zero2(ray_start_2_cpus, tmp_path_factory):
    paths = write_tiny_run(tmp_path_factory.mktemp("sft_run"))
    base = [f"run={paths.root}", "name=zero2", "train.eval_every=4", "tasks.sid_to_title=0.5",
            "tasks.title_history_sid=0.3", *TINY]
    first = load_config(SFTConfig, None, base + ["train.max_steps=8"])
    run_sft(first)
    after_first = state_of(paths.sft_dir("zero2") / "checkpoint_000008")
    cfg = load_config(SFTConfig, None, base + ["train.max_steps=16"])
    out = run_sft(cfg)
    return {"paths": paths, "cfg": cfg, "out": out, "after_first": after_first,
            "final": state_of(paths.sft_dir("zero2") / "checkpoint_000016")}


def test_loss_falls_and_every_parameter_changed(zero2):
    final = zero2["final"]
    train = [loss for _, loss in final["train"]]
    valid = [loss for _, loss in final["valid"]]
    assert np.mean(train[-3:]) < 0.8 * np.mean(train[:3]), train
    assert valid[-1] < valid[0] and [s for s, _ in final["valid"]] == [4, 8, 12, 16]
    model, _ = load_sft_model(zero2["out"])
    before = init_params(zero2["cfg"])
    trained = dict(model.named_parameters())
    assert set(trained) == set(before)
    unchanged = [n for n, p in trained.items() if torch.allclose(p, before[n])]
    assert not unchanged, f"parameters that did not train: {unchanged}"


def test_restart_with_same_name_continues_from_checkpoint(zero2):
    first, final = zero2["after_first"], zero2["final"]
    assert [s for s, _ in final["train"]] == list(range(1, 17))
    assert final["resumed_at"] == [8]
    # steps 1-8 are the first run's (a fresh run with 16 steps would follow another LR schedule)
    assert final["train"][:8] == first["train"]
    assert final["valid"][:2] == first["valid"]


def test_exported_model_reloads_to_identical_logits(zero2):
    paths, cfg = zero2["paths"], zero2["cfg"]
    meta = read_meta(zero2["out"])
    assert meta["sid_method"] == "rqkmeans" and meta["levels"] == 3 and meta["codebook_sizes"] == [8, 8, 8]
    best = Path(meta["checkpoint"])
    assert best.parent == paths.sft_dir("zero2") and meta["best_valid_loss"] == min(v for _, v in zero2["final"]["valid"])
    model, tok = load_sft_model(zero2["out"])
    valid = prepare_inputs(cfg)["valid"]
    np.testing.assert_allclose(probe_logits(model, valid), state_of(best)["probe"], rtol=0, atol=1e-5)
    assert first_sid_id(tok) == meta["first_sid_token_id"]
    assert (paths.sft_dir("zero2") / "loss.png").stat().st_size > 1000 and (paths.sft_dir("zero2") / "stage.json").is_file()
    started = time.perf_counter()
    assert run_sft(cfg) == zero2["out"] and time.perf_counter() - started < 5  # finished stage: skipped


def test_freeze_base_survives_a_killed_worker(ray_start_2_cpus, tmp_path):
    paths = write_tiny_run(tmp_path)
    cfg = load_config(SFTConfig, None, [
        f"run={paths.root}", "name=freeze_crash", "model.freeze_base=true", "train.max_steps=6",
        "train.eval_every=2", "train.lr=2e-2", "train.crash_at_step=3", "train.crash_rank=1",
        "train.max_failures=1", *TINY])
    out = run_sft(cfg)
    marker = paths.sft_dir("freeze_crash") / "crash_marker"
    assert marker.is_file(), "the injected fault never fired"
    final = state_of(paths.sft_dir("freeze_crash") / "checkpoint_000006")
    assert final["resumed_at"] == [2] and [s for s, _ in final["train"]] == list(range(1, 7))
    model, tok = load_sft_model(out)
    before, first = init_params(cfg), first_sid_id(tok)
    for name, p in model.named_parameters():
        if name == "model.embed_tokens.weight":
            assert torch.equal(p[:first], before[name][:first]), "a frozen token row moved"
            assert not torch.equal(p[first:], before[name][first:]), "the SID token rows did not train"
        else:
            assert torch.equal(p, before[name]), f"frozen parameter {name} moved"


class _Payload:
    """Pickles as a call: what a tampered checkpoint file in shared storage could hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_deepspeed_resume_refuses_a_tampered_checkpoint_file(tmp_path):
    """DeepSpeed's loader is replaced by a weights-only one: tensors and the few DeepSpeed classes of a
    ZeRO-2 file load (the SFT/GRPO resume tests load real ones), a pickled call is refused unexecuted."""
    import torch

    from ray_rec.errors import InputError
    from ray_rec.trainer.backend import weights_only_load

    good = tmp_path / "state.pt"
    torch.save({"optimizer_state_dict": {"step": torch.tensor(3.0)}, "ds_version": "0.19.8"}, good)
    assert weights_only_load(str(good))["ds_version"] == "0.19.8"
    marker = tmp_path / "code-ran"
    bad = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save({"optimizer_state_dict": _Payload(marker)}, bad)
    with pytest.raises(InputError, match=f"{bad}: refused to load a checkpoint file"):
        weights_only_load(str(bad))
    assert not marker.exists()
