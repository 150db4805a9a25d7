"""``ray-rec sid build|report|import``: semantic IDs from the command line.

Examples::

    ray-rec sid build --run runs/default --method rqkmeans_constrained
    ray-rec sid build --run runs/default --method rqkmeans --method rqvae --set epochs=50   # two fits in parallel
    ray-rec sid build --config jobs/configs/sid.yaml --set codebook_size=[256,256,256]
    ray-rec sid report --run runs/default                        # every SID set under runs/default/sid/
    ray-rec sid report ../shared/data/amazon18_industrial/Industrial_and_Scientific.index.json
    ray-rec sid import ../shared/data/amazon18_industrial/Industrial_and_Scientific.index.json --run runs/default --name minionerec

Flags are shorthands for config keys (``--seed`` is ``seed``); precedence: defaults < ``--config``
YAML < flags < ``--set key=value``. Only argparse and the config system are imported here so that
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args
from ray_rec.paths import DEFAULT_RUN, RunPaths

_METHODS = ["rqkmeans", "rqkmeans_constrained", "rqvae", "rqkmeans_plus"]


def _build(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ray_rec.sid.build import run_sid_builds
    from ray_rec.sid.config import SIDConfig

    cfg = config_from_args(SIDConfig, args, ["run", "seed", "levels", "codebook_size", "embeddings", "name", "epochs"])
    methods = args.method or [cfg.method]
    if args.name and len(methods) > 1:
        from ray_rec.errors import InputError
        raise InputError("--name names one output folder; leave it out when building several methods")
    cfgs = [replace(cfg, method=m) for m in methods]
    paths = run_sid_builds(cfgs)
    for path in paths:
        print(path)
    _print_reports([p.parent for p in paths])
    return 0


def _print_reports(dirs: list[Path]) -> None:
    import json

    from ray_rec.sid.report import format_report

    reports = {d.name: json.loads((d / "report.json").read_text()) for d in dirs if (d / "report.json").is_file()}
    if reports:
        print(format_report(reports))


def _resolve(source: str, run: str) -> Path:
    """A file as given, a folder's codes.parquet, or a SID set name under <run>/sid/."""

    path = Path(source)
    if path.is_file():
        return path
    return path / "codes.parquet" if path.is_dir() else RunPaths(run).codes(source)


def _report(args: argparse.Namespace) -> int:
    from ray_rec import artifacts
    from ray_rec.errors import InputError
    from ray_rec.io import write_json
    from ray_rec.sid.index_io import codebook_sizes, codes_arrays, quantizer_levels, read_index_json
    from ray_rec.sid.report import format_report, report_row, sid_report

    sources = [_resolve(s, args.run) for s in args.sources]
    if not sources:
        root = RunPaths(args.run).root / "sid"
        sources = sorted(p / "codes.parquet" for p in root.glob("*") if (p / "codes.parquet").is_file())
        if not sources:
            raise InputError(f"{root}: no SID sets here; run `ray-rec sid build` or pass a codes.parquet / index.json")
    reports = {}
    for src in sources:
        if src.suffix == ".json":
            _, codes = read_index_json(src)
            stored, levels = [], args.levels or 3
        else:
            table = artifacts.read_codes(src)
            _, codes = codes_arrays(table)
            stored, levels = codebook_sizes(table), args.levels or quantizer_levels(table) or 3
        levels = min(levels, codes.shape[1])
        sizes = [args.codebook_size] * levels if args.codebook_size else stored[:levels] or [256] * levels
        name = src.parent.name if src.name == "codes.parquet" else src.name
        reports[name] = sid_report(codes, sizes)
    print(format_report(reports))
    if args.out:
        write_json({k: {"row": report_row(k, r), "report": r} for k, r in reports.items()}, args.out)
    return 0


def _import(args: argparse.Namespace) -> int:
    from ray_rec.sid.build import import_index

    print(import_index(args.index_json, args.run, args.name))
    _print_reports([RunPaths(args.run).root / "sid" / args.name])
    return 0


def register(subparsers: Any) -> None:
    sid = subparsers.add_parser("sid", help="semantic IDs: build (Ray tasks), report, import index.json",
                                description="Quantize item embeddings into semantic IDs and report on them.")
    sub = sid.add_subparsers(dest="command", metavar="<command>", required=True)

    b = sub.add_parser("build", help="fit quantizers (in parallel) and write codes, index.json, report",
                       description="Fit one or more quantizers as parallel Ray tasks; outputs in <run>/sid/<name>/.")
    add_config_args(b)
    add_resource_args(b, "not used: every fit and every assignment chunk is its own Ray task")
    g = b.add_argument_group("shorthands for config keys")
    g.add_argument("--run", help="run folder (run)")
    g.add_argument("--method", action="append", choices=_METHODS, help="quantizer (method); repeat to fit several in parallel")
    g.add_argument("--name", help="output folder under <run>/sid/ (name; default the method)")
    g.add_argument("--embeddings", help="embeddings Parquet (embeddings; default <run>/embeddings/embeddings.parquet)")
    g.add_argument("--seed", type=int, help="seed (seed)")
    g.add_argument("--levels", type=int, help="code levels (levels)")
    g.add_argument("--codebook-size", type=int, help="codes per level (codebook_size)")
    g.add_argument("--epochs", type=int, help="rqvae/rqkmeans_plus training epochs (epochs)")
    b.set_defaults(func=_build)

    r = sub.add_parser("report", help="collisions, usage and entropy of SID sets",
                       description="Report on codes.parquet files, index.json files or SID sets of a run.")
    r.add_argument("sources", nargs="*", help="codes.parquet, index.json or a name under <run>/sid/ (default: all of them)")
    r.add_argument("--run", default=DEFAULT_RUN, help=f"run folder (default {DEFAULT_RUN})")
    r.add_argument("--levels", type=int, help="quantizer levels; later levels count as de-duplication "
                                                "(default: as stored with the codes, else 3)")
    r.add_argument("--codebook-size", type=int, help="codes per quantizer level (default: as stored with the codes, "
                                                     "else 256)")
    r.add_argument("--out", help="also write the reports as JSON here")
    r.set_defaults(func=_report)

    i = sub.add_parser("import", help="bring a MiniOneRec index.json into <run>/sid/<name>/",
                       description="Read SIDs made elsewhere (MiniOneRec/LC-Rec/LETTER index.json) into the codes artifact.")
    i.add_argument("index_json", help="index.json: {\"0\": [\"<a_236>\", \"<b_231>\", \"<c_226>\"], ...}")
    i.add_argument("--run", default=DEFAULT_RUN, help=f"run folder (default {DEFAULT_RUN})")
    i.add_argument("--name", default="imported", help="folder under <run>/sid/ (default imported)")
    i.set_defaults(func=_import)
