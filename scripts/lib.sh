# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; do not run it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
COLLECTIONS_DIR="$VENV/collections"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
WHEELHOUSE="${NVFLARE_WHEELHOUSE:-$CACHE/wheelhouse}"
BASE_IMAGE="${NVFLARE_TEST_IMAGE:-federated-nvflare/debian12-systemd:latest}"
SLURM_IMAGE="${NVFLARE_SLURM_IMAGE:-federated-nvflare/debian12-slurm:latest}"
export ROOT VENV CACHE COLLECTIONS_DIR CONSTRAINTS WHEELHOUSE BASE_IMAGE SLURM_IMAGE

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# The environment every Ansible tool of this project runs in.
use_venv() {
  [ -x "$VENV/bin/python" ] || die "no virtualenv at $VENV: run 'make bootstrap' first"
  export PATH="$VENV/bin:$PATH"
  export VIRTUAL_ENV="$VENV"
  export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_DIR"
  export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
  export ANSIBLE_HOME="$CACHE/ansible-home"
  export NVFLARE_WHEELHOUSE="$WHEELHOUSE"
}
