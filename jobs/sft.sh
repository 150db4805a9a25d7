#!/usr/bin/env bash
# SFT under Ray Train with DeepSpeed ZeRO-2:  jobs/sft.sh [flags]
#   jobs/sft.sh --config jobs/configs/sft_smoke.yaml                                   # tiny check
#   jobs/sft.sh --set resources.use_gpu=true --set resources.workers=8 --set model.path=/models/Qwen2.5-0.5B
# Outputs in <run>/sft/<name>/ (model/, loss.png, history.json, stage.json); the same --name resumes a run
# from its latest checkpoint.
exec "$(dirname "$0")/_submit.sh" ray-rec sft --config jobs/configs/sft.yaml "$@"
