"""``run_sft(cfg)``: the SFT stage launcher. Builds inputs on the driver, trains under ``TorchTrainer``,
exports the best checkpoint to ``<run>/sft/model``.

Steps:

1. read ``items.parquet``, ``samples_{train,valid}.parquet`` and ``sid/<method>/codes.parquet`` with
   pyarrow; check every history item has a SID;
2. build the tokenizer (SID tokens added) once per run name, kept in ``<run>/sft/<name>/inputs/`` so
   that a resumed run tokenizes identically; tokenize the weighted task mix (with ``distill.weight``
   > 0, plus the run SASRec's soft targets: :mod:`ray_rec.train.distill`); ship it to the workers
   through the object store;
3. ``TorchTrainer`` with ``ScalingConfig`` / ``RunConfig(name, storage_path=<run>/sft)`` /
   ``FailureConfig`` / ``CheckpointConfig`` (best by valid loss). A rerun with the same name resumes
   from its latest checkpoint; a lost worker restarts the group from it;
4. copy the best checkpoint's Hugging Face files to ``<run>/sft/model`` with ``ray_rec_sft.json``
   (SID method, levels, codebook sizes, prompt settings), draw ``<run>/sft/loss.png``, write
   ``<run>/sft/stage.json``. A finished stage with the same config is skipped.

Run it with ``ray-rec sft --config jobs/configs/sft_smoke.yaml --set run=runs/demo``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from ray_rec import artifacts
from ray_rec.config import to_dict
from ray_rec.errors import InputError
from ray_rec.io import atomic_dir, save_figure, write_json
from ray_rec.paths import RunPaths
from ray_rec.stage import is_done, mark_done
from ray_rec.train.config import ScalingSection, SFTConfig

STAGE_IGNORE = ("scaling",)  # worker counts do not change what is trained (same global batches)
EXPORT_SKIP = {"deepspeed", "optimizer.pt", "trainer_state.json"}


def inputs_dir(cfg: SFTConfig) -> Path:
    """Where the driver keeps this run name's tokenizer."""
    return RunPaths(cfg.run).sft_dir / cfg.name / "inputs"


def prepare_inputs(cfg: SFTConfig) -> dict[str, Any]:
    """Tokenizer and tokenized train/valid examples (see the module docstring, steps 1-2)."""
    from transformers import PreTrainedTokenizerFast

    from ray_rec.train import tasks
    from ray_rec.train.model import build_tokenizer, codebook_sizes_of, first_sid_id

    paths = RunPaths(cfg.run)
    codes_path = paths.codes(cfg.sid_method)
    codes = tasks.read_codes(codes_path)
    titles = tasks.read_titles(paths.items)
    train_s, valid_s = tasks.read_samples(paths.samples("train")), tasks.read_samples(paths.samples("valid"))
    tasks.check_sids(train_s, codes, codes_path)
    tasks.check_sids(valid_s, codes, codes_path)
    sizes = codebook_sizes_of(codes.values())
    tok_dir = inputs_dir(cfg) / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    else:
        tokenizer = build_tokenizer(cfg.model, artifacts.read_items(paths.items, columns=["item_id", "title"]), sizes)
        with atomic_dir(tok_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    teacher = None
    if cfg.distill.weight > 0:
        from ray_rec.train.distill import Teacher

        teacher = Teacher(cfg.distill.teacher or paths.sasrec_dir / "model", codes, cfg.distill.temperature)
    train, counts = tasks.build_examples(tokenizer, cfg.tasks, train_s, codes, titles, seed=cfg.train.seed,
                                         teacher=teacher)
    valid = tasks.valid_examples(tokenizer, valid_s, codes, cfg.tasks, cfg.train.valid_max_samples, cfg.train.seed)
    if len(train) < cfg.train.global_batch_size:
        raise InputError(f"only {len(train)} training examples for a global batch of {cfg.train.global_batch_size}; "
                         "lower train.global_batch_size or raise task weights")
    meta = {"sid_method": cfg.sid_method, "codes": str(codes_path), "levels": len(sizes),
            "codebook_sizes": sizes, "max_sid_length": max(len(c) for c in codes.values()),
            "max_history": cfg.tasks.max_history, "first_sid_token_id": first_sid_id(tokenizer),
            "prompt": "ray_rec.train.prompts.encode_prompt", "task_counts": counts,
            "train_examples": len(train), "train_tokens": int(len(train.ids)), "valid_examples": len(valid)}
    return {"tokenizer": tokenizer, "train": train, "valid": valid, "first_new_id": first_sid_id(tokenizer),
            "meta": meta}


def torch_trainer(loop, loop_config: dict[str, Any], scaling: ScalingSection, name: str, storage: Path,
                  keep: int, score_attribute: str, score_order: str):
    """A TorchTrainer over ``scaling``'s workers (one GPU each and NCCL when ``use_gpu``, else gloo), run
    ``name`` under ``storage`` (the same name resumes), ``keep`` best checkpoints by ``score_attribute``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker={"CPU": scaling.cpus_per_worker,
                                                           **({"GPU": 1} if scaling.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name, storage_path=str(storage), failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=score_attribute,
                                               checkpoint_score_order=score_order)),
    )


def make_trainer(cfg: SFTConfig, data_ref, crash_marker: str = ""):
    """The TorchTrainer of this config (driver side; Ray must be initialised)."""
    from ray_rec.train.loop import train_loop_per_worker

    return torch_trainer(train_loop_per_worker, {"cfg": cfg, "data": data_ref, "crash_marker": crash_marker},
                         cfg.scaling, cfg.name, RunPaths(cfg.run).sft_dir, cfg.train.checkpoints_to_keep,
                         "valid_loss", "min")


def best_checkpoint_dir(result, key: str = "valid_loss", higher_is_better: bool = False) -> Path:
    """Folder of the reported checkpoint with the best ``key`` (the lowest, or the highest when
    ``higher_is_better``; the latest on ties; NaN never wins), or the latest checkpoint when none is ranked."""
    sign = 1.0 if higher_is_better else -1.0
    ranked = [(sign * m.get(key, -sign * float("inf")), m.get("step", 0), c) for c, m in (result.best_checkpoints or [])
              if m.get(key) == m.get(key)]  # NaN never equals itself
    if ranked:
        return Path(max(ranked, key=lambda r: (r[0], r[1]))[2].path)
    if result.checkpoint is None:
        raise RuntimeError(f"the run produced no checkpoint (error: {result.error})")
    return Path(result.checkpoint.path)


def export_model(src: Path, dest: Path, meta: dict[str, Any]) -> Path:
    """Copy the HF files of checkpoint ``src`` to ``dest`` atomically, with ray_rec_sft.json."""
    from ray_rec.train.model import META_FILE

    with atomic_dir(dest) as tmp:
        for f in src.iterdir():
            if f.name not in EXPORT_SKIP:
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dest


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


def crash_marker(cfg, stage_dir: Path) -> str:
    """Marker file of train.crash_at_step under ``stage_dir/<name>`` (fault injection happens once per run
    name); '' when no fault is asked for. ``cfg``: any stage config with ``name`` and a ``train`` section."""
    return str(stage_dir / cfg.name / "crash_marker") if cfg.train.crash_at_step >= 0 else ""


def run_sft(cfg: SFTConfig) -> Path:
    """Train (or resume) and export; returns ``RunPaths(cfg.run).sft_model``."""
    from ray_rec.runtime import init_ray

    paths = RunPaths(cfg.run)
    if is_done(paths.sft_dir, cfg, STAGE_IGNORE) and (paths.sft_model / "config.json").is_file():
        print(f"sft: {paths.sft_model} is up to date for this config; skipping")
        return paths.sft_model
    started = time.time()
    inputs = prepare_inputs(cfg)  # bad input fails here, before Ray starts
    init_ray()
    import ray

    print(f"sft: {inputs['meta']['train_examples']} train examples ({inputs['meta']['train_tokens']} tokens), "
          f"{inputs['meta']['valid_examples']} valid; tasks {inputs['meta']['task_counts']}")
    ref = ray.put({k: inputs[k] for k in ("tokenizer", "train", "valid", "first_new_id")})
    result = make_trainer(cfg, ref, crash_marker(cfg, paths.sft_dir)).fit()
    if result.error is not None:
        raise RuntimeError(f"SFT run {cfg.name} failed: {result.error}") from result.error
    best = best_checkpoint_dir(result)
    state = json.loads((Path(result.checkpoint.path) / "trainer_state.json").read_text())
    meta = {**inputs["meta"], "checkpoint": str(best), "config": to_dict(cfg),
            "best_valid_loss": state["best_valid"], "steps": state["step"]}
    export_model(best, paths.sft_model, meta)
    plot_losses(state, paths.sft_dir / "loss.png")
    write_json({"train": state["train"], "valid": state["valid"]}, paths.sft_dir / "history.json")
    mark_done(paths.sft_dir, cfg, started, STAGE_IGNORE, steps=state["step"], best_valid_loss=state["best_valid"],
              checkpoint=str(best), model=str(paths.sft_model))
    print(f"sft: best valid loss {state['best_valid']:.4f} at {best.name}; model in {paths.sft_model}")
    return paths.sft_model
