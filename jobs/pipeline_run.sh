#!/usr/bin/env bash
# The whole pipeline (data -> embeddings -> SIDs -> SFT -> evaluation, plus SASRec) as one Ray job:
#   jobs/pipeline_run.sh                                              # the main job on the synthetic default
#   jobs/pipeline_run.sh --config jobs/configs/pipeline_smoke.yaml    # a few-minute check
#   jobs/pipeline_run.sh --set sft.resources.use_gpu=true --set sft.resources.workers=8   # on GPU workers
# A stage whose result-affecting config and inputs are unchanged since it last finished is skipped;
# the report lands in <run>/report/.
exec "$(dirname "$0")/_submit.sh" ray-rec pipeline run --config jobs/configs/pipeline.yaml "$@"
