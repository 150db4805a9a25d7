"""Recommendation quality on the real data sets in ../shared/data, beside the published rows.

For each data set and protocol: the data stage (``ray_rec.data.prepare.run_prepare``) writes a run
folder, SASRec is trained under Ray Train (``ray_rec.baseline.train.run_sasrec``) for each seed, and
the generative model, when asked for (``--rows sasrec,generative``), goes through the shipped SIDs -> SFT ->
constrained beam search (:func:`generative_row`). All rows are scored by ``ray_rec.metrics``.

* Industrial (MiniOneRec's exact test rows): ``strict`` trains only on windows whose target lies in
  ``items[:n_prefix]`` of sequences.jsonl (10,393 samples); ``train+valid`` adds the valid rows and,
  having no clean validation set, trains for the strict run's best epoch count and keeps the last weights.
* Scientific (max history 20) and Beauty (max history 50): leave-one-out.

Writes bench/results/quality.json and quality.md. Run by hand (never in the test suite)::

    python bench/quality.py                                  # Industrial both protocols + Scientific, 1 seed
    python bench/quality.py --datasets industrial --seeds 3
    python bench/quality.py --datasets beauty --time-limit 600 --workers 2
    python bench/quality.py --datasets industrial --protocols strict --rows sasrec,generative
    python bench/quality.py --datasets scientific --rows sasrec,generative --sids sasrec --sid-set codebook_size=32
    python bench/quality.py --merge quality,quality_generative_industrial --name quality_summary

``--merge`` trains nothing: it joins the tables of earlier result files (rows of a later file replace
rows of the same name) into one JSON and markdown table, keeping each source's command and commit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, write_result  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KS = (3, 5, 10)
KEYS = [f"{m}@{k}" for k in KS for m in ("hr", "ndcg")]

# data set -> how the data stage reads it and how long SASRec's input is
DATASETS: dict[str, dict[str, Any]] = {
    "industrial": {"source": "minionerec", "folder": "amazon18_industrial", "max_history": 10,
                   "protocols": ("strict", "train+valid")},
    "scientific": {"source": "lcrec", "folder": "scientific", "max_history": 20, "protocols": ("leave_one_out",)},
    "beauty": {"source": "beauty", "folder": "beauty", "max_history": 50, "protocols": ("leave_one_out",)},
}

# MiniOneRec paper, Table 1, on the Industrial test rows (copied from shared/data/README.md).
PUBLISHED = {
    "industrial": {
        "SASRec (MiniOneRec Table 1)": [.0790, .0700, .0909, .0748, .1088, .0806],
        "TIGER (MiniOneRec Table 1)": [.0852, .0742, .1010, .0807, .1321, .0908],
        "LC-Rec (MiniOneRec Table 1)": [.0915, .0805, .1057, .0862, .1332, .0952],
        "HSTU (MiniOneRec Table 1)": [.0927, .0885, .1037, .0918, .1163, .0958],
        "MiniOneRec (MiniOneRec Table 1)": [.1143, .1011, .1321, .1084, .1586, .1167],
    },
}
# The README's own SASRec measured on a 2-core machine: hr@5, ndcg@5, hr@10, ndcg@10.
README_SASREC = {
    ("industrial", "strict"): [.0921, .0722, .1096, .0779],
    ("industrial", "train+valid"): [.1154, .0854, .1449, .0950],
    ("scientific", "leave_one_out"): [.0800, .0582, .1037, .0658],
    ("beauty", "leave_one_out"): [.0564, .0327, .0842, .0417],
}
# TIGER reproduced on Beauty (GRID's logs), Recall@10 / NDCG@10.
BEAUTY_TIGER = {"hr@10": .0655, "ndcg@10": .0369}


def reference_rows(dataset: str, protocol: str) -> dict[str, dict[str, float]]:
    """Published and reference rows for one data set and protocol, keyed like our metrics."""
    rows = {name: dict(zip(["hr@3", "ndcg@3", "hr@5", "ndcg@5", "hr@10", "ndcg@10"], values, strict=False))
            for name, values in PUBLISHED.get(dataset, {}).items()}
    if (dataset, protocol) in README_SASREC:
        rows["SASRec (data README, 2 cores)"] = dict(zip(["hr@5", "ndcg@5", "hr@10", "ndcg@10"],
                                                         README_SASREC[dataset, protocol], strict=False))
    if dataset == "beauty":
        rows["TIGER (GRID reproduction)"] = dict(BEAUTY_TIGER)
    return rows


def prepare(dataset: str, protocol: str, work_dir: Path) -> Any:
    """Run the data stage for one data set/protocol into ``work_dir/<dataset>-<protocol>``."""
    from ray_rec.data.config import DataConfig
    from ray_rec.data.prepare import run_prepare

    spec = DATASETS[dataset]
    cfg = DataConfig(run=str(work_dir / f"{dataset}-{protocol.replace('+', '_')}"), source=spec["source"],
                     path=str(SHARED / spec["folder"]), max_history=spec["max_history"],
                     protocol=protocol if protocol != "leave_one_out" else "strict")
    return run_prepare(cfg)


def sasrec_row(paths: Any, dataset: str, protocol: str, seed: int, args: argparse.Namespace,
               epochs: int | None = None) -> dict[str, Any]:
    """Train and score one SASRec; ``epochs`` fixes the epoch count and keeps the last weights."""
    from ray_rec.baseline.config import SASRecConfig
    from ray_rec.baseline.train import run_sasrec
    from ray_rec.config import load_config

    base = {"run": str(paths.root), "max_len": DATASETS[dataset]["max_history"], "seed": seed,
            "time_limit_s": args.time_limit, "force": True,
            # the machine's cores split over the workers (the SFT rows use both cores too)
            "resources": {"workers": args.workers,
                          "threads_per_worker": max(1, (os.cpu_count() or 1) // args.workers),
                          "cpus_per_worker": max(1, (os.cpu_count() or 1) // args.workers)}}
    if epochs is not None:
        base.update(select="last", max_epochs=epochs)
    cfg = load_config(SASRecConfig, None, args.sasrec_set, base=base)
    started = time.perf_counter()
    metrics = run_sasrec(cfg)
    return {"seed": seed, "test": metrics["test"], "valid": metrics["valid"], "best_epoch": metrics["best_epoch"],
            "epochs": metrics["epochs"], "train_seconds": round(metrics["train_seconds"], 1),
            "stage_seconds": round(time.perf_counter() - started, 1), "params": metrics["params"],
            "train_samples": _count_rows(paths.samples("train")), "train_rows_used": metrics["train_samples"],
            "train_positions": metrics["train_positions"], "config": metrics["config"]}


# data set -> the SIDs shipped beside it (MiniOneRec's, LC-Rec's RQ-VAE, LETTER's)
SHIPPED_SIDS = {"industrial": "amazon18_industrial/Industrial_and_Scientific.index.json",
                "scientific": "scientific/Scientific.index.rqvae_native.json",
                "beauty": "beauty/Beauty.index.letter.json"}


def write_shipped_codes(paths: Any, dataset: str, method: str = "shipped") -> str:
    """The data set's published SIDs -> ``<run>/sid/<method>/codes.parquet`` (schema CODES), with a
    de-duplication level appended to items whose SIDs collide; returns ``method``."""
    import json

    import pyarrow as pa

    from ray_rec.io import write_parquet
    from ray_rec.schema import CODES
    from ray_rec.sid.collisions import PAD, add_dedup_level
    from ray_rec.sid.tokens import parse_sid

    index = json.loads((SHARED / SHIPPED_SIDS[dataset]).read_text())
    item_ids = np.array(sorted(int(k) for k in index), dtype=np.int64)
    codes = add_dedup_level(np.array([parse_sid(index[str(i)]) for i in item_ids], dtype=np.int64))
    rows = [[int(c) for c in row if c != PAD] for row in codes]
    write_parquet(pa.table({"item_id": item_ids, "codes": rows}, schema=CODES), paths.codes(method), CODES)
    return method


def write_sasrec_codes(paths: Any, args: argparse.Namespace, name: str = "sasrec_cf") -> str:
    """Collaborative SIDs: the item embeddings of the SASRec trained in the same run folder (train split
    only, early-stopped on valid), quantized by the SID stage (``--sid-set`` overrides); returns the name."""
    from ray_rec.baseline.train import ensure_item_embeddings
    from ray_rec.config import load_config
    from ray_rec.sid.build import run_sid_build
    from ray_rec.sid.config import SIDConfig

    embeddings = ensure_item_embeddings(paths)  # no SASRec yet: add sasrec to --rows
    cfg = load_config(SIDConfig, None, [f"run={paths.root}", f"name={name}", f"embeddings={embeddings}",
                                        "resources.cpus_per_worker=2", "resources.threads_per_worker=2",
                                        *args.sid_set])
    run_sid_build(cfg)
    return cfg.out_name


def write_item_level_codes(paths: Any, method: str) -> str:
    """``method``'s SIDs without their de-duplication level, plus one level more: the item's own index.
    Every item then has a token of its own (as it has an embedding of its own in SASRec) and no two SIDs
    collide; returns the new method's name, ``<method>_item``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_rec.io import write_parquet
    from ray_rec.schema import CODES

    table = pq.read_table(paths.codes(method))
    codes = table.column("codes").to_pylist()
    levels = min(len(c) for c in codes)  # the quantized levels; longer rows carry a de-duplication code
    item_ids = table.column("item_id").to_numpy()
    index = np.argsort(np.argsort(item_ids))  # 0..N-1 in item id order
    rows = [c[:levels] + [int(i)] for c, i in zip(codes, index, strict=True)]
    write_parquet(pa.table({"item_id": item_ids, "codes": rows}, schema=CODES), paths.codes(f"{method}_item"), CODES)
    return f"{method}_item"


SID_LABELS = {"shipped": "shipped SIDs", "sasrec": "SASRec-embedding SIDs",
              "sasrec_item": "SASRec-embedding SIDs + an item level"}


def generative_row(paths: Any, dataset: str, protocol: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The SFT model on the same run folder: SIDs (shipped, or quantized from our SASRec's item
    embeddings with ``--sids sasrec``) -> SFT -> constrained beam search on test.

    Calls the stages' public functions (each skipped when already done for the same config) and
    returns a row shaped like :func:`sasrec_row`: test metrics, training wall time, parameters."""
    from ray_rec.config import load_config
    from ray_rec.eval.config import EvalConfig
    from ray_rec.eval.evaluate import run_evaluate
    from ray_rec.train.config import SFTConfig
    from ray_rec.train.run import run_sft

    method = write_shipped_codes(paths, dataset) if args.sids == "shipped" else write_sasrec_codes(paths, args)
    if args.sids == "sasrec_item":
        method = write_item_level_codes(paths, method)
    # the committed configs, then this run's folder and SIDs, then the command line's --sft-set
    sft_cfg = load_config(SFTConfig, args.sft_config, [
        f"run={paths.root}", f"sid_method={method}", f"name=sft-seed{seed}",
        f"tasks.max_history={DATASETS[dataset]['max_history']}", f"train.seed={seed}", *args.sft_set])
    started = time.perf_counter()
    model_dir = run_sft(sft_cfg)
    sft_seconds = time.perf_counter() - started
    eval_cfg = load_config(EvalConfig, args.eval_config, [
        f"run={paths.root}", f"checkpoint={model_dir}", f"sid_method={method}", "split=test",
        f"name=sft-seed{seed}", *args.eval_set])
    started = time.perf_counter()
    metrics = run_evaluate(eval_cfg)
    test = {k: v for k, v in metrics.items() if k.startswith(("hr@", "ndcg@"))}
    return {"seed": seed, "test": test, "cc": metrics.get("cc"), "train_seconds": round(sft_seconds, 1),
            "stage_seconds": round(sft_seconds + time.perf_counter() - started, 1),
            "eval_seconds": round(time.perf_counter() - started, 1), "params": _hf_parameters(model_dir),
            "train_samples": _count_rows(paths.samples("train")), "sid_method": method}


def _hf_parameters(model_dir: Path) -> int:
    """Parameter count of a saved Hugging Face model (tied weights counted once)."""
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())


def _count_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def mean_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and spread) of the test metrics over seeds, with the costs of the runs."""
    test = {k: float(np.mean([r["test"][k] for r in runs])) for k in runs[0]["test"]}
    return {"test": test, "test_std": {k: float(np.std([r["test"][k] for r in runs])) for k in KEYS},
            "seeds": [r["seed"] for r in runs], "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
            "stage_seconds": float(np.mean([r["stage_seconds"] for r in runs])), "params": runs[0]["params"],
            "train_samples": runs[0]["train_samples"], "runs": runs}


def ratios(ours: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """ours / reference for every metric both have."""
    return {k: round(ours[k] / reference[k], 3) for k in KEYS if k in ours and k in reference and reference[k]}


def block_ratios(ours: dict[str, Any], references: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each of our rows over each SASRec reference, and our generative rows over our SASRec row."""
    out = {f"{mine} / {ref}": ratios(row["test"], references[ref])
           for mine, row in ours.items() for ref in references if ref.startswith("SASRec")}
    baseline = [name for name in ours if name.startswith("SASRec")]
    for mine, row in ours.items():
        if baseline and not mine.startswith("SASRec"):
            out[f"{mine} / {baseline[0]}"] = ratios(row["test"], ours[baseline[0]]["test"])
    return out


def markdown(results: dict[str, Any]) -> str:
    """One table per data set/protocol: our rows (with wall time and parameters) then the references."""
    out = ["# Recommendation quality on ../shared/data", ""]
    for key, block in results["tables"].items():
        out += [f"## {key}", "", f"training samples: {block['train_samples']:,}", "",
                "| model | " + " | ".join(KEYS) + " | train wall (s) | params |",
                "|---|" + "---|" * (len(KEYS) + 2)]
        for name, row in block["ours"].items():
            cells = [f"{row['test'][k]:.4f}" for k in KEYS]
            out.append(f"| **{name}** | " + " | ".join(cells) +
                       f" | {row['train_seconds']:.0f} | {row['params']:,} |")
        for name, row in block["references"].items():
            out.append(f"| {name} | " + " | ".join(f"{row[k]:.4f}" if k in row else "" for k in KEYS) + " | | |")
        for name, ratio in block["ratios"].items():
            out.append(f"\n{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
        out.append("")
    return "\n".join(out) + "\n"


def run_block(dataset: str, protocol: str, args: argparse.Namespace, strict_epochs: int | None) -> dict[str, Any]:
    """Every row of one data set/protocol table."""
    paths = prepare(dataset, protocol, args.work_dir)
    # valid rows are trained on: no clean early stopping, so the strict run's epoch count (or 20)
    epochs = (strict_epochs or 20) if protocol == "train+valid" else None
    ours: dict[str, Any] = {}
    if "sasrec" in args.rows:
        runs = []
        for seed in range(args.seeds):
            runs.append(sasrec_row(paths, dataset, protocol, seed, args, epochs))
            t = runs[-1]["test"]
            print(f"[{dataset}/{protocol}] SASRec seed {seed}: HR@10 {t['hr@10']:.4f} NDCG@10 {t['ndcg@10']:.4f} "
                  f"({runs[-1]['train_seconds']:.0f} s, best epoch {runs[-1]['best_epoch']}/{runs[-1]['epochs']})",
                  flush=True)
        ours[f"SASRec (ours, {args.seeds} seed{'s' * (args.seeds > 1)})"] = mean_row(runs)
    if "generative" in args.rows:
        row = generative_row(paths, dataset, protocol, 0, args)
        print(f"[{dataset}/{protocol}] SFT: HR@10 {row['test']['hr@10']:.4f} NDCG@10 {row['test']['ndcg@10']:.4f} "
              f"(SFT {row['train_seconds']:.0f} s, CC {row['cc']})", flush=True)
        ours[f"SFT (ours, {SID_LABELS[args.sids]}{', ' + args.label if args.label else ''})"] = mean_row([row])
    references = reference_rows(dataset, protocol)
    first = next(iter(ours.values()))
    return {"dataset": dataset, "protocol": protocol, "train_samples": first["train_samples"], "ours": ours,
            "references": references, "ratios": block_ratios(ours, references)}


def merge_results(names: list[str]) -> dict[str, Any]:
    """The tables of bench/results/<name>.json for each name, joined per data set/protocol, with
    the ratios to the SASRec references recomputed and each source's command, commit and machine."""
    import json

    tables: dict[str, Any] = {}
    sources = []
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            raise SystemExit(f"--merge: {path} does not exist (run the benchmark with --name {name} first)")
        doc = json.loads(path.read_text())
        sources.append({"name": name, **{k: doc.get(k) for k in ("command", "commit", "date", "machine")}})
        for key, block in doc["results"]["tables"].items():
            merged = tables.setdefault(key, {**block, "ours": {}})
            for row, values in block["ours"].items():
                merged["ours"][row] = {**values, "source": name}
    for block in tables.values():
        block["ratios"] = block_ratios(block["ours"], block["references"])
    return {"tables": tables, "sources": sources}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="industrial,scientific", help="comma list of " + ", ".join(DATASETS))
    parser.add_argument("--protocols", default="", help="Industrial protocols (default: strict,train+valid)")
    parser.add_argument("--seeds", type=int, default=1, help="SASRec seeds per table (mean reported)")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers per SASRec run")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds of training per SASRec run (0 = none)")
    parser.add_argument("--rows", default="sasrec", help="comma list of sasrec, generative (the SFT model: slow)")
    parser.add_argument("--sasrec-set", action="append", default=[], metavar="KEY=VALUE",
                        help="SASRecConfig override for every run, e.g. dropout=0.3")
    parser.add_argument("--sft-set", action="append", default=[], metavar="KEY=VALUE",
                        help="SFTConfig override of the generative row, e.g. train.epochs=10")
    parser.add_argument("--sids", default="shipped", choices=sorted(SID_LABELS),
                        help="the generative row's SIDs: shipped beside the data, or sasrec (our SASRec's item "
                             "embeddings quantized by the SID stage; needs the sasrec row in the same run folder), "
                             "or sasrec_item (those SIDs plus a last level holding the item's own token)")
    parser.add_argument("--sid-set", action="append", default=[], metavar="KEY=VALUE",
                        help="SIDConfig override for --sids sasrec, e.g. codebook_size=32")
    parser.add_argument("--sft-config", default=str(ROOT / "jobs/configs/sft_cpu.yaml"), help="SFT YAML of the generative row")
    parser.add_argument("--eval-config", default=str(ROOT / "jobs/configs/evaluate.yaml"),
                        help="evaluation YAML of the generative row")
    parser.add_argument("--eval-set", action="append", default=[], metavar="KEY=VALUE",
                        help="EvalConfig override of the generative row, e.g. resources.workers=2")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/ray_rec_quality"), help="run folders go here")
    parser.add_argument("--name", default="quality", help="result name: bench/results/<name>.json and .md")
    parser.add_argument("--label", default="", help="words added to the generative row's name, e.g. sid_seq")
    parser.add_argument("--merge", default="", help="comma list of earlier result names to join (trains nothing)")
    args = parser.parse_args(argv)
    if args.merge:
        results = merge_results([n.strip() for n in args.merge.split(",") if n.strip()])
        write_result(args.name, results)
        (RESULTS / f"{args.name}.md").write_text(markdown(results))
        print(markdown(results))
        return 0

    from ray_rec.runtime import init_ray, setup_env

    setup_env()
    # Ray Train's placement-group cleaner asks the State API (served by the dashboard) every few
    # seconds and logs a warning each time it is missing
    init_ray()
    results: dict[str, Any] = {"tables": {}, "args": {k: str(v) for k, v in vars(args).items()}}
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if dataset not in DATASETS:
            parser.error(f"unknown data set {dataset!r}; choose from {', '.join(DATASETS)}")
        protocols = DATASETS[dataset]["protocols"]
        if dataset == "industrial" and args.protocols:
            protocols = tuple(p.strip() for p in args.protocols.split(","))
        strict_epochs = None
        for protocol in protocols:
            block = run_block(dataset, protocol, args, strict_epochs)
            if protocol == "strict" and "sasrec" in args.rows:
                runs = next(iter(block["ours"].values()))["runs"]
                strict_epochs = int(round(np.mean([r["best_epoch"] for r in runs])))
            results["tables"][f"{dataset} ({protocol})"] = block
            write_result(args.name, results)  # keep what is done if a later table fails
            (RESULTS / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
