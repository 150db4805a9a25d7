#!/usr/bin/env bash
# Write a toy JSONL data set on the cluster:  jobs/toy_data.sh [--out F] [--num-users N] [--num-items N] ...
# Extra flags are passed to `ray-rec toy data` (see `ray-rec toy data --help`).
exec "$(dirname "$0")/_submit.sh" ray-rec toy data --out runs/default/toy/users.jsonl "$@"
