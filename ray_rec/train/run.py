"""``run_sft(cfg)``: the SFT stage launcher. Builds inputs on the driver, trains under ``TorchTrainer``,
exports the best checkpoint to ``<run>/sft/<name>/model``.

Steps:

1. read ``items.parquet``, ``samples_{train,valid}.parquet`` and ``sid/<method>/codes.parquet`` with
   pyarrow; check every history item has a SID;
2. build the tokenizer (SID tokens added) once per run name, kept in ``<run>/sft/<name>/inputs/`` so
   that a resumed run tokenizes identically; tokenize the weighted task mix (with ``distill.weight``
   > 0, plus the run SASRec's soft targets: :mod:`ray_rec.train.distill`); ship it to the workers
   through the object store;
3. ``TorchTrainer`` (:func:`ray_rec.trainer.launch.torch_trainer`) with ``ScalingConfig`` /
   ``RunConfig(name, storage_path=<run>/sft)`` (checkpoints in ``<run>/sft/<name>/``) / ``FailureConfig`` /
   ``CheckpointConfig`` (best by valid loss). A rerun with the same name resumes from its latest
   checkpoint; a lost worker restarts the group from it;
4. copy the best checkpoint's Hugging Face files to ``<run>/sft/<name>/model`` with ``ray_rec_sft.json``
   (SID method, levels, codebook sizes, prompt settings), draw ``loss.png`` and write ``history.json`` and
   ``stage.json`` beside it. The stage is skipped when its result-affecting config and its inputs (data,
   SIDs, base model, teacher) are unchanged since that record (:mod:`ray_rec.stage`); when the inputs
   changed, the run name's folder is cleared and training starts over.

Run it with ``ray-rec sft --config jobs/configs/sft_smoke.yaml --set run=runs/demo``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray_rec import artifacts, stages
from ray_rec.config import to_dict
from ray_rec.errors import InputError
from ray_rec.io import atomic_dir, file_sha256, save_figure, write_json
from ray_rec.paths import RunPaths
from ray_rec.train.config import SFTConfig
from ray_rec.trainer.launch import best_checkpoint, crash_marker, export_model, location, read_json, torch_trainer


def inputs_dir(cfg: SFTConfig) -> Path:
    """Where the driver keeps this run name's tokenizer."""
    return RunPaths(cfg.run).sft_inputs(cfg.name)


def prepare_inputs(cfg: SFTConfig) -> dict[str, Any]:
    """Tokenizer and tokenized train/valid examples (see the module docstring, steps 1-2)."""
    from transformers import PreTrainedTokenizerFast

    from ray_rec.lm.model import build_tokenizer, first_sid_id
    from ray_rec.sid.index_io import codebook_sizes, codes_by_item
    from ray_rec.train import tasks

    paths = RunPaths(cfg.run)
    codes_path = paths.codes(cfg.sid_method)
    codes_file = artifacts.read_codes(codes_path)
    codes = codes_by_item(codes_file)
    items = artifacts.read_items(paths.items, columns=["item_id", "title"])
    titles = tasks.titles_by_item(items)
    train_s, valid_s = (tasks.Samples.from_table(artifacts.read_samples(paths.samples(s)), paths.samples(s))
                        for s in ("train", "valid"))
    tasks.check_sids(train_s, codes, codes_path)
    tasks.check_sids(valid_s, codes, codes_path)
    sizes = codebook_sizes(codes_file)  # as stored with the codes: an unused top code keeps its token
    tok_dir = inputs_dir(cfg) / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    else:
        tokenizer = build_tokenizer(cfg.model, items, sizes)
        with atomic_dir(tok_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    teacher = None
    if cfg.distill.weight > 0:
        from ray_rec.train.distill import Teacher

        teacher = Teacher(cfg.distill.teacher or paths.sasrec_model, codes, cfg.distill.temperature)
    train, counts = tasks.build_examples(tokenizer, cfg.tasks, train_s, codes, titles, seed=cfg.train.seed,
                                         teacher=teacher)
    valid = tasks.valid_examples(tokenizer, valid_s, codes, cfg.tasks, cfg.train.valid_max_samples, cfg.train.seed)
    if len(train) < cfg.train.global_batch_size:
        raise InputError(f"only {len(train)} training examples for a global batch of {cfg.train.global_batch_size}; "
                         "lower train.global_batch_size or raise task weights")
    meta = {"sid_method": cfg.sid_method, "codes": str(codes_path), "levels": len(sizes),
            "codebook_sizes": sizes, "codes_sha256": file_sha256(codes_path), "max_sid_length": max(len(c) for c in codes.values()),
            "max_history": cfg.tasks.max_history, "first_sid_token_id": first_sid_id(tokenizer),
            "prompt": "ray_rec.lm.prompts.encode_prompt", "task_counts": counts,
            "train_examples": len(train), "train_tokens": int(len(train.ids)), "valid_examples": len(valid)}
    return {"tokenizer": tokenizer, "train": train, "valid": valid, "first_new_id": first_sid_id(tokenizer),
            "meta": meta}


def make_trainer(cfg: SFTConfig, data_ref, crash_marker: str = ""):
    """The TorchTrainer of this config (driver side; Ray must be initialised)."""
    from ray_rec.train.loop import train_loop_per_worker

    paths = RunPaths(cfg.run)
    return torch_trainer(train_loop_per_worker, {"cfg": cfg, "data": data_ref, "crash_marker": crash_marker},
                         cfg.resources, cfg.train.max_failures, cfg.name, paths.storage.train_storage(paths.sft_root),
                         cfg.train.checkpoints_to_keep, "valid_loss", "min")


def plot_losses(state: dict[str, Any], path: Path) -> Path:
    """Train loss per step and valid loss per evaluation, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if state["train"]:
        steps, losses = zip(*state["train"], strict=False)
        ax.plot(steps, losses, lw=0.8, alpha=0.7, label="train (per step)")
    if state["valid"]:
        steps, losses = zip(*state["valid"], strict=False)
        ax.plot(steps, losses, "o-", label="valid (main task)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("token cross-entropy")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("SFT loss")
    return save_figure(fig, path)


def run_sft(cfg: SFTConfig) -> Path:
    """Train (or resume) and export; returns ``RunPaths(cfg.run).sft_model(cfg.name)``."""
    from ray_rec.runtime import init_ray

    paths = RunPaths(cfg.run)
    out_dir, model_dir = paths.sft_dir(cfg.name), paths.sft_model(cfg.name)
    if stages.skip_or_reset("sft", cfg, model_dir):
        return model_dir
    started = time.time()
    inputs = prepare_inputs(cfg)  # bad input fails here, before Ray starts
    init_ray()
    import ray

    print(f"sft: {inputs['meta']['train_examples']} train examples ({inputs['meta']['train_tokens']} tokens), "
          f"{inputs['meta']['valid_examples']} valid; tasks {inputs['meta']['task_counts']}")
    ref = ray.put({k: inputs[k] for k in ("tokenizer", "train", "valid", "first_new_id")})
    result = make_trainer(cfg, ref, crash_marker(cfg, paths.sft_root)).fit()
    if result.error is not None:
        raise RuntimeError(f"SFT run {cfg.name} failed: {result.error}") from result.error
    best = best_checkpoint(result)
    state = read_json(result.checkpoint, "trainer_state.json")
    meta = {**inputs["meta"], "checkpoint": location(best), "config": to_dict(cfg),
            "best_valid_loss": state["best_valid"], "steps": state["step"]}
    export_model(best, model_dir, meta)
    plot_losses(state, out_dir / "loss.png")
    write_json({"train": state["train"], "valid": state["valid"]}, out_dir / "history.json")
    stages.finish("sft", cfg, started, steps=state["step"], best_valid_loss=state["best_valid"],
                  checkpoint=location(best), model=paths.location(model_dir), worker_nodes=state.get("nodes", []),
                  resumed_at=state.get("resumed_at", []))
    print(f"sft: best valid loss {state['best_valid']:.4f} at {Path(best.path).name}; "
          f"model in {paths.location(model_dir)}")
    return model_dir
