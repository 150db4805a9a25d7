"""``ray-rec data prepare | embed | stats``: the data stage from the command line.

    ray-rec data prepare                                   # synthetic default into runs/default
    ray-rec data prepare --config jobs/configs/data_industrial.yaml --run runs/ind
    ray-rec data prepare --set source=amazon --set amazon.reviews=R.json.gz --set amazon.meta=M.json.gz
    ray-rec data embed --run runs/ind --workers 2
    ray-rec data stats --run runs/ind

Only argparse and the config helpers are imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args
from ray_rec.paths import DEFAULT_RUN


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare a data set, embed item texts, show data statistics",
                                   description="The data stage: typed Parquet artifacts in <run>/data and item "
                                               "vectors in <run>/embeddings.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    prep = sub.add_parser("prepare", help="load or generate a data set into <run>/data (Parquet + manifest)")
    prep.add_argument("--run", dest="run", help="run folder (default runs/default)")
    prep.add_argument("--source", choices=["synthetic", "minionerec", "lcrec", "beauty", "amazon"],
                      help="data source (default synthetic)")
    prep.add_argument("--path", help="data set folder (minionerec, lcrec, beauty)")
    add_config_args(prep)
    prep.set_defaults(func=_prepare)

    emb = sub.add_parser("embed", help="embed item texts with Ray Data into <run>/embeddings")
    emb.add_argument("--run", dest="run", help="run folder (default runs/default)")
    emb.add_argument("--encoder", help="local encoder folder (default: packaged all-MiniLM-L6-v2)")
    add_config_args(emb)
    add_resource_args(emb, "encoder actors, each loading the model once")
    emb.set_defaults(func=_embed)

    st = sub.add_parser("stats", help="counts, sparsity, length distributions and a PNG histogram")
    st.add_argument("--run", dest="run", default=DEFAULT_RUN, help=f"run folder (default {DEFAULT_RUN})")
    st.set_defaults(func=_stats)


def _prepare(args: argparse.Namespace) -> int:
    from ray_rec.data.config import DataConfig

    cfg = config_from_args(DataConfig, args, ["run", "source", "path"])
    from ray_rec.data.prepare import run_prepare

    run_prepare(cfg)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from ray_rec.data.config import EmbedConfig

    cfg = config_from_args(EmbedConfig, args, ["run", "encoder"])
    from ray_rec.data.embed import read_embeddings, run_embed

    path = run_embed(cfg)
    ids, vectors = read_embeddings(path)
    print(f"embed: {len(ids)} vectors of dimension {vectors.shape[1]} -> {path}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from ray_rec.data.stats import format_stats, run_stats
    from ray_rec.paths import RunPaths

    paths = RunPaths(args.run)
    print(format_stats(run_stats(paths)))
    print(f"wrote {paths.data_dir / 'stats.json'} and {paths.data_dir / 'stats.png'}")
    return 0
