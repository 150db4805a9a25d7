"""``ray-rec pipeline run``: the whole pipeline on one run folder (the README's main command)."""

from __future__ import annotations

import argparse

from ray_rec.cliargs import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("pipeline", help="run every stage end to end")
    cmds = group.add_subparsers(dest="command", metavar="<command>", required=True)
    run = cmds.add_parser("run", help="data -> embeddings -> SIDs -> SFT -> evaluation, plus SASRec, then a report",
                          description="Run the whole pipeline on one run folder. Stages already done for the same "
                                      "config are skipped; the report lands in <run>/report/.")
    add_config_args(run, default_config=None)
    run.add_argument("--run", help="run folder (default from the config: runs/default)")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ray_rec.pipeline.config import PipelineConfig
    from ray_rec.pipeline.run import run_pipeline

    cfg = config_from_args(PipelineConfig, args, ["run"])
    run_pipeline(cfg)
    return 0
