#!/usr/bin/env bash
# Shared by the jobs/*.sh recipes: submit "$@" as a Ray job from the repository root.
# RAY_ADDRESS picks the cluster (default: a local `ray start --head` dashboard on 127.0.0.1:8265).
# Ray 2.60 turns on token authentication; the submitting side must set RAY_AUTH_MODE=token
# (it reads ~/.ray/auth_token), otherwise the job server answers "Missing authentication token".
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
exec ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- "$@"
