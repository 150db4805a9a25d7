#!/usr/bin/env bash
# Embed item texts with a Ray Data actor pool into <run>/embeddings:  jobs/data_embed.sh [flags]
#   jobs/data_embed.sh --use-gpu --workers 4   # GPU encoder actors
exec "$(dirname "$0")/_submit.sh" ray-rec data embed --config jobs/configs/data_embed.yaml "$@"
