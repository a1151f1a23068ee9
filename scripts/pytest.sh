#!/usr/bin/env bash
# pytest with the project's environment. "No tests collected" (exit 5) is a failure: a
# suite that silently ran nothing must not pass.
source "$(dirname "$0")/lib.sh"
use_venv
cd "$ROOT"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "ERROR: pytest collected no tests in: $*" >&2
  exit 1
fi
exit "$rc"
