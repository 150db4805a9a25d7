#!/usr/bin/env bash
# Train the toy recommender under Ray Train:  jobs/toy_train.sh [flags]
#   jobs/toy_train.sh --config jobs/configs/toy_smoke.yaml          # 20-second smoke run
#   jobs/toy_train.sh --use-gpu --workers 4 --amp                  # GPU workers (cluster.yaml)
# Flags after the config override it (see `ray-rec toy train --help`); the same --name resumes a run.
exec "$(dirname "$0")/_submit.sh" ray-rec toy train --config jobs/configs/toy.yaml "$@"
