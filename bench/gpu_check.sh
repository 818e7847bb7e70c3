#!/usr/bin/env bash
# The GPU check as one call on a lent GPU machine (no tensorflow there: jax and torch only).
#
#   bash bench/gpu_check.sh [python] [extra gpu_train.py args]   e.g. on the device tool:
#   run(command="bash bench/gpu_check.sh", carry=[".whl"])
#
# Keras is not installed there: carry its wheels in .whl/ (bench/README.md says how to fetch
# them). Prints the card, then bench/gpu_train.py's table for each backend; logs go to $OUT.
set -uo pipefail
PY=${1:-python3}
shift || true
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
rc=0
for backend in jax torch; do
  echo "== $backend"
  timeout "${GPU_CHECK_TIMEOUT_S:-240}" "$PY" bench/gpu_train.py "$backend" "$@" 2>&1 | tee "$OUT/gpu_train_$backend.log"
  ((PIPESTATUS[0] == 0)) || { echo "== $backend failed (rc ${PIPESTATUS[0]})"; rc=1; }
done
exit $rc
