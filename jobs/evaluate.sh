#!/usr/bin/env bash
# Constrained-beam evaluation on a Ray Data actor pool:  jobs/evaluate.sh [flags]
#   jobs/evaluate.sh --split test --device cuda --num-actors 8
exec "$(dirname "$0")/_submit.sh" ray-rec evaluate --config jobs/configs/evaluate.yaml "$@"
