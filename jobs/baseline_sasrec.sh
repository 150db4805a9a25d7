#!/usr/bin/env bash
# The SASRec baseline under Ray Train on the run folder's splits:  jobs/baseline_sasrec.sh [flags]
#   jobs/baseline_sasrec.sh --use-gpu --workers 4
exec "$(dirname "$0")/_submit.sh" ray-rec baseline sasrec --config jobs/configs/sasrec.yaml "$@"
