#!/usr/bin/env bash
# Prepare a data set into <run>/data:  jobs/data_prepare.sh [flags]
#   jobs/data_prepare.sh                                          # the synthetic default
#   jobs/data_prepare.sh --config jobs/configs/data_amazon.yaml   # raw Amazon dumps on Ray Data
exec "$(dirname "$0")/_submit.sh" ray-rec data prepare --config jobs/configs/data.yaml "$@"
