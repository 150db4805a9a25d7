#!/usr/bin/env bash
# Ray Tune sweep (ASHA on ndcg@10) of the toy recommender:  jobs/toy_tune.sh [flags]
#   jobs/toy_tune.sh --set tune.num_samples=16 --set tune.max_concurrent=4
# Trials show in the Ray dashboard; best_config.yaml, results.md/.csv and trials.png land in
# <run>/toy/tune/<tune.name>/.
exec "$(dirname "$0")/_submit.sh" ray-rec toy tune --config jobs/configs/toy.yaml "$@"
