"""``run_rl(cfg)``: the GRPO stage launcher. Builds prompts on the driver, trains under ``TorchTrainer``,
exports the best checkpoint to ``<run>/rl/<name>/model``.

Steps:

1. read the starting model's ``ray_rec_sft.json`` (SID method, history length; the model is ``model``,
   or ``<run>/sft/<sft_name>/model`` when that is empty), the SIDs and the train/valid samples (every
   item must have a SID; errors name the file, row and field);
2. encode each sample's history as the SFT prompt and its target as SID tokens; ship them through the
   object store;
3. ``TorchTrainer`` with the SFT stage's worker settings, ``RunConfig(name, storage_path=<run>/rl)``
   (checkpoints in ``<run>/rl/<name>/``), ranked by valid NDCG@K. A rerun with the same name resumes
   from its latest checkpoint;
4. copy the best checkpoint's Hugging Face files to ``<run>/rl/<name>/model`` (with the starting model's
   ``ray_rec_sft.json`` plus an ``rl`` entry, so ``ray-rec evaluate --checkpoint <run>/rl/<name>/model``
   works), draw ``curves.png`` (rollout hit rate, KL, valid NDCG@K) and write ``history.json`` and
   ``stage.json`` beside it. The stage is skipped when its result-affecting config and its inputs
   (starting model, SIDs, samples, SASRec for the CF reward) are unchanged (:mod:`ray_rec.stage`); when
   the inputs changed, the run name's folder is cleared and training starts over.

Run it with ``ray-rec rl --config jobs/configs/rl_smoke.yaml --run runs/demo``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ray_rec import stages
from ray_rec.config import to_dict
from ray_rec.errors import InputError
from ray_rec.io import save_figure, write_json
from ray_rec.paths import RunPaths
from ray_rec.rl.config import RLConfig


def model_dir_of(cfg: RLConfig) -> Path:
    """The starting policy: ``cfg.model`` or ``<run>/sft/<sft_name>/model``."""
    path = stages.rl_start_model(cfg)
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no Hugging Face model (config.json missing); train one with `ray-rec sft` "
                         "or set model=<folder>")
    return path


def prepare_inputs(cfg: RLConfig, model_dir: Path) -> dict[str, Any]:
    """Prompts, targets and SIDs of the train and valid samples (module docstring, steps 1-2)."""
    from transformers import PreTrainedTokenizerFast

    from ray_rec import artifacts
    from ray_rec.lm.checkpoint import check_trained_codes, read_meta
    from ray_rec.lm.inputs import samples_with_sids
    from ray_rec.lm.prompts import encode_prompt, encode_text, response_text

    paths = RunPaths(cfg.run)
    meta = read_meta(model_dir)
    codes_path = stages.model_codes(cfg, model_dir)
    table = artifacts.read_codes(codes_path)
    check_trained_codes(model_dir, table, codes_path)
    item_ids, codes = table.column("item_id").to_numpy(), table.column("codes").to_pylist()
    distinct = len({tuple(c) for c in codes})
    if cfg.grpo.group_size > distinct:
        raise InputError(f"grpo.group_size={cfg.grpo.group_size} exceeds the {distinct} distinct SIDs of {codes_path}")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    codes_of = dict(zip(item_ids.tolist(), codes, strict=True))
    cut = int(meta.get("max_history", 0))
    out: dict[str, Any] = {"item_ids": item_ids, "codes": codes, "meta": meta, "codes_path": str(codes_path)}
    for split, limit in (("train", cfg.grpo.max_prompts), ("valid", cfg.grpo.eval_users)):
        samples = samples_with_sids(artifacts.read_samples(paths.samples(split)), item_ids, paths.samples(split), limit)
        if len(samples) == 0:
            raise InputError(f"{paths.samples(split)}: no samples")
        histories = [h[-cut:] if cut > 0 else h for h in samples.column("history").to_pylist()]
        targets = samples.column("target").to_numpy()
        prompts = [encode_prompt(tokenizer, [codes_of[i] for i in h]) for h in histories]
        prefix = "" if split == "train" else "valid_"
        out[prefix + "prompts"], out[prefix + "targets"] = prompts, targets
        if split == "train":
            out["histories"] = histories
            out["target_tokens"] = [encode_text(tokenizer, response_text(codes_of[int(t)])) for t in targets]
    if len(out["prompts"]) < cfg.train.global_batch_size:
        raise InputError(f"only {len(out['prompts'])} training samples for a global batch of "
                         f"{cfg.train.global_batch_size} users; lower train.global_batch_size")
    return out


def make_trainer(cfg: RLConfig, data_ref, model_dir: Path, sasrec_dir: str):
    """The TorchTrainer of this config (driver side; Ray must be initialised)."""
    from ray_rec.rl.loop import train_loop_per_worker
    from ray_rec.trainer.launch import crash_marker, torch_trainer

    paths = RunPaths(cfg.run)
    return torch_trainer(train_loop_per_worker,
                         {"cfg": cfg, "data": data_ref, "model_dir": stages.worker_ref(cfg, model_dir),
                          "sasrec_dir": stages.worker_ref(cfg, Path(sasrec_dir)) if sasrec_dir else "",
                          "crash_marker": crash_marker(cfg, paths.rl_root)},
                         cfg.resources, cfg.train.max_failures, cfg.name, paths.storage.train_storage(paths.rl_root),
                         cfg.train.checkpoints_to_keep, f"valid_ndcg@{cfg.grpo.eval_k}", "max")


def plot_curves(state: dict[str, Any], key: str, path: Path) -> Path:
    """Rollout hit rate and KL per step, and the valid ranking metric per evaluation, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_v) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.array([r["step"] for r in state["train"]])
    window = max(1, len(steps) // 20)
    for key_, label, colour in (("hit_rate", "groups holding the right item", "C0"),
                                ("kl", "KL to the SFT model", "C1")):
        values = np.array([r[key_] for r in state["train"]])
        ax_r.plot(steps, values, lw=0.6, alpha=0.3, color=colour)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax_r.plot(steps[window - 1:], smooth, lw=1.5, color=colour, label=f"{label} (mean of {window} steps)")
    ax_r.set_xlabel("optimizer step")
    ax_r.legend(fontsize=8, loc="lower right")
    ax_r.grid(alpha=0.3)
    ax_r.set_title("rollouts")
    ax_v.plot([v["step"] for v in state["valid"]], [v[key] for v in state["valid"]], "o-")
    ax_v.set_xlabel("optimizer step")
    ax_v.set_ylabel(key)
    ax_v.grid(alpha=0.3)
    ax_v.set_title("valid ranking (step 0 = the SFT model)")
    fig.tight_layout()
    return save_figure(fig, path)


def run_rl(cfg: RLConfig) -> Path:
    """Train (or resume) and export; returns ``<run>/rl/<name>/model``."""
    from ray_rec.runtime import init_ray
    from ray_rec.trainer.launch import best_checkpoint, export_model, location, read_json

    paths = RunPaths(cfg.run)
    out_dir, out = paths.rl_dir(cfg.name), paths.rl_model(cfg.name)
    model_dir = model_dir_of(cfg)
    if stages.skip_or_reset("rl", cfg, out):
        return out
    started = time.time()
    inputs = prepare_inputs(cfg, model_dir)  # bad input fails here, before Ray starts
    sasrec_dir = ""
    if cfg.grpo.cf_weight > 0:
        sasrec_dir = str(paths.sasrec_model)
        if not (Path(sasrec_dir) / "model.json").is_file():
            raise InputError(f"{sasrec_dir}: no SASRec model for grpo.cf_weight > 0; run `ray-rec baseline sasrec` "
                             "first or set grpo.cf_weight=0")
    init_ray()
    import ray

    print(f"rl: {len(inputs['prompts'])} train users, {len(inputs['valid_prompts'])} valid users, "
          f"{cfg.grpo.group_size} rollouts each, reward {cfg.grpo.reward}"
          + (f" + {cfg.grpo.cf_weight} x SASRec" if sasrec_dir else ""))
    ref = ray.put({k: v for k, v in inputs.items() if k not in ("meta", "codes_path")})
    result = make_trainer(cfg, ref, model_dir, sasrec_dir).fit()
    if result.error is not None:
        raise RuntimeError(f"RL run {cfg.name} failed: {result.error}") from result.error
    key = f"valid_ndcg@{cfg.grpo.eval_k}"
    best = best_checkpoint(result, key, higher_is_better=True)
    state = read_json(result.checkpoint, "trainer_state.json")
    meta = {**inputs["meta"], "rl": {"start": paths.location(model_dir), "checkpoint": location(best),
                                     "config": to_dict(cfg),
                                     "steps": state["step"], "best_" + key: state["best"],
                                     "start_" + key: state["valid"][0][key]}}
    export_model(best, out, meta)
    plot_curves(state, key, out_dir / "curves.png")
    write_json({"train": state["train"], "valid": state["valid"]}, out_dir / "history.json")
    stages.finish("rl", cfg, started, steps=state["step"], checkpoint=location(best), model=paths.location(out),
                  worker_nodes=state.get("nodes", []),
                  resumed_at=state.get("resumed_at", []),
                  **{"start_" + key: state["valid"][0][key], "best_" + key: state["best"]})
    print(f"rl: {key} {state['valid'][0][key]:.4f} before, best {state['best']:.4f} at {Path(best.path).name}; "
          f"model in {paths.location(out)}")
    return out

