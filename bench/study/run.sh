#!/usr/bin/env bash
# The whole study of the README section "Does it help?" (about 100 minutes on a 2-core CPU; resumable).
set -euo pipefail
here=$(dirname "$0")
bash "$here/pretrain.sh"
bash "$here/grid_synthetic.sh"
bash "$here/grid_levir.sh"
