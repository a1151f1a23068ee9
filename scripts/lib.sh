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

# pip of the project's virtualenv, quiet, without the noise about index folders that do not
# exist on every machine.
pipq() {
  "$VENV/bin/python" -m pip "$@" -q --disable-pip-version-check \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# Collections unpacked from the pinned PyPI `ansible` wheel into $COLLECTIONS_DIR (Galaxy is
# not needed), each only when missing; a new ansible pin unpacks them all again. The checkout
# itself is linked there as federated.nvflare (relative link: the clone may move).
# Usage: install_collections NAMESPACE.NAME...
install_collections() {
  local version stamp wheel missing=() c
  version=$(sed -n 's/^ansible==//p' "$CONSTRAINTS")
  stamp="$COLLECTIONS_DIR/.ansible-version"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$version" ]; then
    rm -rf "$COLLECTIONS_DIR/ansible_collections" "$COLLECTIONS_DIR/.stamp"
  fi
  for c in "$@"; do
    [ -s "$COLLECTIONS_DIR/ansible_collections/${c/./\/}/MANIFEST.json" ] || missing+=("$c")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    mkdir -p "$CACHE/downloads" "$COLLECTIONS_DIR"
    wheel="$CACHE/downloads/ansible-$version-py3-none-any.whl"
    if [ ! -s "$wheel" ]; then
      log "downloading the ansible $version wheel for its collections"
      pipq download --no-deps -d "$CACHE/downloads" "ansible==$version"
    fi
    log "unpacking collections: ${missing[*]}"
    local patterns=()
    for c in "${missing[@]}"; do patterns+=("ansible_collections/${c/./\/}/*"); done
    "$VENV/bin/python" - "$wheel" "$COLLECTIONS_DIR" "${patterns[@]}" <<'PY'
import fnmatch, sys, zipfile
wheel, dest, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    zf.extractall(dest, names)
PY
    echo "$version" > "$stamp"
  fi
  mkdir -p "$COLLECTIONS_DIR/ansible_collections/federated"
  ln -sfn ../../../.. "$COLLECTIONS_DIR/ansible_collections/federated/nvflare"
}

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
