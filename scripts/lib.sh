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
SSH_IMAGE="${NVFLARE_SSH_IMAGE:-federated-nvflare/debian12-ssh:latest}"
POSTGRESQL_IMAGE="${NVFLARE_POSTGRESQL_IMAGE:-federated-nvflare/debian12-postgresql:latest}"
export ROOT VENV CACHE COLLECTIONS_DIR CONSTRAINTS WHEELHOUSE BASE_IMAGE SLURM_IMAGE SSH_IMAGE POSTGRESQL_IMAGE

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

# A tool that needs pins of its own (they conflict with the main constraints) lives in a
# virtualenv of its own under .cache, made from a fully pinned requirements file and made again
# whenever that file changes. Usage: tool_venv DIR PINS_FILE
tool_venv() {
  local venv=$1 pins=$2 want
  want=$(sha256sum "$pins" | cut -d' ' -f1)
  [ "$(cat "$venv/.pins" 2>/dev/null)" = "$want" ] && return 0
  log "creating $venv (the pinned packages of ${pins#"$ROOT"/})"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$pins" \
    2> >(grep -v 'is ignored: it is neither' >&2)
  echo "$want" > "$venv/.pins"
}
