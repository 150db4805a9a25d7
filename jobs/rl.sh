#!/usr/bin/env bash
# GRPO under Ray Train with DeepSpeed ZeRO-2:  jobs/rl.sh [flags]
#   jobs/rl.sh --config jobs/configs/rl_smoke.yaml                                   # tiny check
#   jobs/rl.sh --run runs/industrial --set resources.use_gpu=true --set resources.workers=8
# Starts from <run>/sft/<sft_name>/model (--set sft_name=NAME; default sft); outputs in <run>/rl/<name>/
# (model/, curves.png, history.json, stage.json). The same --name resumes a run from its latest checkpoint.
exec "$(dirname "$0")/_submit.sh" ray-rec rl --config jobs/configs/rl.yaml "$@"
