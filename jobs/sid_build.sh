#!/usr/bin/env bash
# Build semantic IDs on the cluster:  jobs/sid_build.sh [flags]
#   jobs/sid_build.sh --method rqkmeans --method rqkmeans_constrained --method rqvae   # fits run in parallel
#   jobs/sid_build.sh --config jobs/configs/sid_smoke.yaml                            # seconds-long check
# Flags after the config override it (see `ray-rec sid build --help`); outputs in <run>/sid/<method>/.
exec "$(dirname "$0")/_submit.sh" ray-rec sid build --config jobs/configs/sid.yaml "$@"
