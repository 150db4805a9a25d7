"""The stage registry: one record per stage, read by the CLI, the pipeline (its sections, its order
checks, the runs) and freshness.

A record names a stage's config class, its entry function and its command by dotted paths (so that
reading the registry imports no stage and ``ray-rec --help`` stays fast), and says where the stage
writes (``out_dir``), which files it reads (``inputs``, hashed into its fingerprint by
:mod:`ray_rec.stage`) and which stages must run before it in the pipeline (``upstream``).

Adding a stage (worked example in ``docs/stages.md``): a new folder ``ray_rec/<stage>/`` with its
config dataclass, its ``run_<stage>(cfg)`` and a ``cli.py`` whose ``register(subparsers)`` adds the
command; then one :class:`Stage` below. The CLI, the pipeline's order checks and its ``stages:`` list,
and freshness pick it up from here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_rec.paths import SPLITS, RunPaths


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline (or a standalone tool such as the toy recommender)."""

    name: str                                # key under the pipeline config and in ``stages:``
    command: str                             # the CLI command that runs it, e.g. "baseline sasrec"
    config: str                              # "module:Class" of its one config dataclass
    run: str                                 # "module:function" taking that config
    cli: str                                 # module whose register(subparsers) adds the command's group
    out_dir: Callable[[Any], Path]           # config -> the folder holding its stage.json
    inputs: Callable[[Any], list[Path | str]]  # config -> the files and folders it reads (paths, or URIs)
    upstream: Callable[[Any], tuple[str, ...]] = lambda cfg: ()  # config -> stages whose outputs it reads
    results: tuple[str, ...] = ()            # files in out_dir other stages or the report read
    in_pipeline: bool = True                 # a section of PipelineConfig and a valid ``stages:`` entry
    unused: tuple[str, ...] = ()             # fields of a shared config this stage never reads
    doc: str = field(default="", compare=False)

    def config_class(self) -> type:
        return _load(self.config)

    def entry(self) -> Callable[[Any], Any]:
        return _load(self.run)


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _paths(cfg: Any) -> RunPaths:
    return RunPaths(cfg.run)


# --- what each stage reads -------------------------------------------------------------------------

def _data_inputs(cfg: Any) -> list[Path | str]:
    from ray_rec.storage import is_uri

    sources = [cfg.path] if cfg.path else []
    if cfg.source == "amazon":
        sources += [cfg.amazon.reviews, cfg.amazon.meta]  # raw dumps: local paths or URIs
    return [s if is_uri(s) else Path(s) for s in sources]


def _embed_inputs(cfg: Any) -> list[Path]:
    return [_paths(cfg).items] + ([Path(cfg.encoder)] if cfg.encoder else [])


def _sid_embeddings(cfg: Any) -> Path:
    return Path(cfg.embeddings) if cfg.embeddings else _paths(cfg).embeddings


def _sid_inputs(cfg: Any) -> list[Path]:
    return [_sid_embeddings(cfg), _paths(cfg).items]


def _sid_upstream(cfg: Any) -> tuple[str, ...]:
    embeddings = _sid_embeddings(cfg).expanduser().resolve()
    return ("sasrec",) if embeddings == _paths(cfg).sasrec_embeddings else ("embed",)


def _sft_teacher(cfg: Any) -> list[Path]:
    if cfg.distill.weight <= 0:
        return []
    return [Path(cfg.distill.teacher) if cfg.distill.teacher else _paths(cfg).sasrec_model]


def _sft_inputs(cfg: Any) -> list[Path]:
    p = _paths(cfg)
    base = [Path(cfg.model.path)] if cfg.model.path else []
    return [p.items, p.samples("train"), p.samples("valid"), p.codes(cfg.sid_method), *base, *_sft_teacher(cfg)]


def _sft_upstream(cfg: Any) -> tuple[str, ...]:
    return ("data", "sid") + (("sasrec",) if cfg.distill.reads_run_sasrec else ())


def eval_checkpoint(cfg: Any) -> Path:
    """The model an EvalConfig scores: ``checkpoint``, or SFT run ``sft_name``'s model (fetched from
    storage into the workspace when the run folder is remote)."""
    return fetch(cfg.run, Path(cfg.checkpoint) if cfg.checkpoint else _paths(cfg).sft_model(cfg.sft_name))


def model_codes(cfg: Any, model: Path) -> Path:
    """The codes.parquet a config scoring or tuning ``model`` reads: its ``sid_method``, or the one the
    model was trained on (its ray_rec_sft.json)."""
    from ray_rec.lm.checkpoint import trained_sid_method

    return _paths(cfg).codes(cfg.sid_method or trained_sid_method(model))


def _eval_inputs(cfg: Any) -> list[Path]:
    checkpoint = eval_checkpoint(cfg)
    return [checkpoint, model_codes(cfg, checkpoint), _paths(cfg).samples(cfg.split)]


def rl_start_model(cfg: Any) -> Path:
    """The starting policy of an RLConfig: ``model``, or SFT run ``sft_name``'s model (fetched from
    storage into the workspace when the run folder is remote)."""
    return fetch(cfg.run, Path(cfg.model) if cfg.model else _paths(cfg).sft_model(cfg.sft_name))


def _rl_inputs(cfg: Any) -> list[Path]:
    p, model = _paths(cfg), rl_start_model(cfg)
    cf = [p.sasrec_model] if cfg.grpo.cf_weight > 0 else []
    return [model, model_codes(cfg, model), p.samples("train"), p.samples("valid"), *cf]


def _rl_upstream(cfg: Any) -> tuple[str, ...]:
    return ("sft", "sid", "data") + (("sasrec",) if cfg.grpo.cf_weight > 0 else ())


def _toy_inputs(cfg: Any) -> list[Path]:
    return [Path(cfg.data.train_path)] if cfg.data.dataset == "jsonl" and cfg.data.train_path else []


# --- the registry ----------------------------------------------------------------------------------

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data", "data prepare", "ray_rec.data.config:DataConfig", "ray_rec.data.prepare:run_prepare",
          "ray_rec.data.cli", out_dir=lambda c: _paths(c).data_dir, inputs=_data_inputs,
          results=("items.parquet", "interactions.parquet", *(f"samples_{s}.parquet" for s in SPLITS),
                   "manifest.json"),
          doc="a data set (or the synthetic catalogue) into typed Parquet: items, interactions, samples"),
    Stage("embed", "data embed", "ray_rec.data.config:EmbedConfig", "ray_rec.data.embed:run_embed",
          "ray_rec.data.cli", out_dir=lambda c: _paths(c).embeddings.parent, inputs=_embed_inputs,
          upstream=lambda c: ("data",), results=("embeddings.parquet",),
          doc="item text -> vectors with a frozen encoder (Ray Data actor pool)"),
    Stage("sid", "sid build", "ray_rec.sid.config:SIDConfig", "ray_rec.sid.build:run_sid_build",
          "ray_rec.sid.cli", out_dir=lambda c: _paths(c).sid_dir(c.out_name), inputs=_sid_inputs,
          upstream=_sid_upstream, results=("codes.parquet", "index.json", "report.json"),
          doc="semantic IDs: a residual quantizer fitted and applied as Ray tasks"),
    Stage("sft", "sft", "ray_rec.train.config:SFTConfig", "ray_rec.train.run:run_sft",
          "ray_rec.train.cli", out_dir=lambda c: _paths(c).sft_dir(c.name), inputs=_sft_inputs,
          upstream=_sft_upstream, results=("model", "history.json"),
          doc="SFT of a causal LM with SID tokens (Ray Train, DeepSpeed ZeRO-2 or DDP)"),
    Stage("evaluate", "evaluate", "ray_rec.eval.config:EvalConfig", "ray_rec.eval.evaluate:run_evaluate",
          "ray_rec.eval.cli", out_dir=lambda c: _paths(c).eval_dir(c.name, c.split), inputs=_eval_inputs,
          upstream=lambda c: ("sft", "sid", "data"), results=("metrics.json", "predictions.parquet"),
          doc="constrained beam search over the SID trie, HR@K / NDCG@K (Ray Data actor pool)"),
    Stage("rl", "rl", "ray_rec.rl.config:RLConfig", "ray_rec.rl.run:run_rl",
          "ray_rec.rl.cli", out_dir=lambda c: _paths(c).rl_dir(c.name), inputs=_rl_inputs,
          upstream=_rl_upstream, results=("model", "history.json"),
          doc="GRPO from the SFT model with constrained beam-search rollouts (Ray Train)"),
    Stage("sasrec", "baseline sasrec", "ray_rec.baseline.config:SASRecConfig", "ray_rec.baseline.train:run_sasrec",
          "ray_rec.baseline.cli", out_dir=lambda c: _paths(c).sasrec_dir,
          inputs=lambda c: [_paths(c).items, *(_paths(c).samples(s) for s in SPLITS)],
          upstream=lambda c: ("data",), results=("metrics.json", "model", "item_embeddings.parquet"),
          doc="the SASRec baseline on the same splits (Ray Train)"),
    Stage("toy_train", "toy train", "ray_rec.toy.config:ToyConfig", "ray_rec.toy.train:run_toy_train",
          "ray_rec.toy.cli", out_dir=lambda c: _paths(c).toy_train_dir(c.name), inputs=_toy_inputs,
          results=("metrics.json",), in_pipeline=False, unused=("tune",),
          doc="the toy sequential recommender under Ray Train"),
    Stage("toy_tune", "toy tune", "ray_rec.toy.config:ToyConfig", "ray_rec.toy.tune:run_toy_tune",
          "ray_rec.toy.cli", out_dir=lambda c: _paths(c).toy_tune_dir(c.tune.name), inputs=_toy_inputs,
          results=("best_config.yaml", "results.csv", "summary.json"), in_pipeline=False, unused=("name",),
          doc="a Ray Tune (ASHA) sweep of the toy recommender"),
)}

PIPELINE_STAGES: tuple[str, ...] = tuple(name for name, s in STAGES.items() if s.in_pipeline)

# command groups of the CLI that are not a stage of their own
EXTRA_CLI = ("ray_rec.pipeline.cli",)


def cli_modules() -> list[str]:
    """Every module that registers a command group, each once, in registry order."""
    return list(dict.fromkeys([s.cli for s in STAGES.values()] + list(EXTRA_CLI)))


def get(name: str) -> Stage:
    """The record of stage ``name`` (KeyError names the valid ones)."""
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None


def _status(name: str, cfg: Any) -> tuple[bool, bool]:
    from ray_rec.stage import STAGE_FILE, status

    record = get(name)
    store = _paths(cfg).storage
    if not store.remote:
        return status(record.out_dir(cfg), cfg, record.inputs(cfg), record.unused)
    # A remote run: bring the inputs and this stage's record from storage, then judge as for a local one.
    for path in record.inputs(cfg):
        fetch(cfg.run, path)
    out = record.out_dir(cfg)
    stored = store.read_remote_bytes(out / STAGE_FILE)
    local = (out / STAGE_FILE).read_bytes() if (out / STAGE_FILE).is_file() else None
    if stored is None:
        (out / STAGE_FILE).unlink(missing_ok=True)
        return False, False
    try:
        stored_record = json.loads(stored)
    except json.JSONDecodeError:
        stored_record = {}
    done, changed = status(out, cfg, record.inputs(cfg), record.unused, record=stored_record)
    if done and (stored != local or not all((out / r).exists() for r in record.results)):
        # the stored results replace the local copies, the record that vouches for them last
        (out / STAGE_FILE).unlink(missing_ok=True)
        for result in record.results:
            store.pull(out / result)
        store.pull(out / STAGE_FILE)
    return done, changed


def fetch(run: str | Path, path: Path) -> Path:
    """Make the workspace copy of ``path`` (an input inside remote run folder ``run``) match storage:
    the file or folder and the record of the stage that wrote it, pulled again only when that record
    changed. Anything else is returned as it is."""
    from ray_rec.stage import STAGE_FILE

    store = RunPaths(run).storage
    if not store.remote or not store.contains(path):
        return path
    path = Path(path).resolve()
    root = store.local.resolve()
    for folder in (path, *path.parents):
        stored = store.read_remote_bytes(folder / STAGE_FILE)
        if stored is not None:
            record = folder / STAGE_FILE
            if record.is_file() and record.read_bytes() == stored and path.exists():
                return path
            record.unlink(missing_ok=True)
            if path != folder:
                store.pull(path)
            else:
                for child in _stored_children(store, folder):
                    store.pull(child)
            store.pull(record)
            return path
        if folder == root:
            break
    store.pull(path)  # written outside any stage (or not at all): mirrored as it is
    return path


def worker_ref(cfg: Any, path: Path) -> Any:
    """What a worker on any node opens ``path`` (an input of this run) with, through
    :func:`ray_rec.nodecache.localize`: the path itself, or for a remote run a reference keyed by the
    content of the stage record that vouches for it."""
    from ray_rec.stage import input_hash

    return _paths(cfg).storage.ref(path, input_hash(path))


def _stored_children(store: Any, folder: Path) -> list[Path]:
    """Entries of a stored stage folder other than its record and Ray Train's run data."""
    import pyarrow.fs as pafs

    infos = store.fs.get_file_info(pafs.FileSelector(store._remote(folder), allow_not_found=True))
    names = [i.path.rsplit("/", 1)[-1] for i in infos]
    return [folder / n for n in names if n != "stage.json" and not n.startswith(("checkpoint_", "."))]


def up_to_date(name: str, cfg: Any) -> bool:
    """Whether stage ``name`` finished with this config and the very inputs it would read now."""
    return _status(name, cfg)[0]


def inputs_changed(name: str, cfg: Any) -> bool:
    """Whether stage ``name`` finished before on inputs other than those it would read now (a resumable
    training stage then starts over instead of continuing a run made from other data)."""
    return _status(name, cfg)[1]


def begin(name: str, cfg: Any) -> None:
    """Drop stage ``name``'s old record before it rewrites its outputs: a run that dies half-way must
    not leave new artifacts behind a record that still vouches for the old ones."""
    from ray_rec.stage import STAGE_FILE

    record = get(name).out_dir(cfg) / STAGE_FILE
    record.unlink(missing_ok=True)
    store = _paths(cfg).storage
    if store.remote:
        store.delete(record)


def skip_or_reset(name: str, cfg: Any, product: Path) -> bool:
    """For a training stage that resumes by run name: True when it is up to date and ``product`` (its
    exported model) exists, so the caller skips; otherwise, when its finished run was made from other
    inputs, that run's folder is removed so training starts over rather than resuming it."""
    import shutil

    done, changed = _status(name, cfg)
    if done and product.exists():
        print(f"{name}: {_paths(cfg).location(product)} is up to date for this config and its inputs; skipping")
        return True
    if changed:
        folder = get(name).out_dir(cfg)
        print(f"{name}: the inputs changed since {_paths(cfg).location(folder)} was trained; starting that run over")
        shutil.rmtree(folder, ignore_errors=True)
        if _paths(cfg).storage.remote:
            _paths(cfg).storage.delete(folder)
    begin(name, cfg)
    return False


def finish(name: str, cfg: Any, started: float, **summary: Any) -> Path:
    """Write stage ``name``'s record (its fingerprint over its inputs as they are now); call it last."""
    from ray_rec.stage import mark_done

    record = get(name)
    path = mark_done(record.out_dir(cfg), cfg, started, record.inputs(cfg), record.unused, **summary)
    store = _paths(cfg).storage
    if store.remote:
        store.push(record.out_dir(cfg))
    return path
