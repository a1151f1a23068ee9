#!/usr/bin/env bash
# Run one Molecule scenario (default: all of them) on Docker systemd test hosts.
#   molecule.sh [SCENARIO] [molecule command, default: test]
# Starts dockerd when it is not running (and stops it again afterwards if it did), builds
# the base image and the wheelhouse when they are missing.
source "$(dirname "$0")/lib.sh"
use_venv

scenario="${1:-}"
shift || true
action=("${@:-test}")

started_docker=0
if ! timeout 10 docker info >/dev/null 2>&1; then
  "$ROOT/scripts/docker.sh" start
  started_docker=1
fi
cleanup() { [ "$started_docker" = 1 ] && "$ROOT/scripts/docker.sh" stop; true; }
trap cleanup EXIT

"$ROOT/scripts/base-image.sh"
"$ROOT/scripts/wheelhouse.sh"

export NVFLARE_TEST_IMAGE="$BASE_IMAGE" NVFLARE_SLURM_IMAGE="$SLURM_IMAGE"
# Molecule installs a copy of this collection under ANSIBLE_HOME: keep it apart from the
# developer tools (ansible-lint would otherwise read a stale copy).
export ANSIBLE_HOME="$CACHE/molecule-ansible-home"
export MOLECULE_NO_LOG=false
# Plain output in logs and CI.
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
cd "$ROOT"
# The scenario option goes right after the command, before any extra arguments (e.g.
# `molecule.sh slurm converge -- --check`).
# Molecule's step lines get the seconds elapsed since the start, so the log shows what each
# step (converge, idempotence, verify) took.
stamp() {
  local line
  while IFS= read -r line; do
    case "$line" in
      INFO*) printf '[%5ds] %s\n' "$SECONDS" "$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}
set -o pipefail
if [ -n "$scenario" ]; then
  molecule "${action[0]}" -s "$scenario" "${action[@]:1}" 2>&1 | stamp
else
  molecule "${action[0]}" --all "${action[@]:1}" 2>&1 | stamp
fi
