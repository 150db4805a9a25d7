#!/usr/bin/env bash
# Constrained-beam evaluation on a Ray Data actor pool:  jobs/evaluate.sh [flags]
#   jobs/evaluate.sh --split test --use-gpu --workers 8
#   jobs/evaluate.sh --checkpoint runs/default/rl/grpo/model --name grpo   # a GRPO model
# Scores <run>/sft/<sft_name>/model unless --checkpoint is given; results in <run>/eval/<name>/<split>/.
exec "$(dirname "$0")/_submit.sh" ray-rec evaluate --config jobs/configs/evaluate.yaml "$@"
