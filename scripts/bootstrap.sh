#!/usr/bin/env bash
# Installs everything the controller needs, and nothing twice: Debian packages, the
# project virtualenv (.venv) with pinned Python packages, and the Ansible collections the
# roles use, unpacked from the pinned PyPI `ansible` wheel (Galaxy is not needed).
# Re-running is cheap: each step is skipped when its inputs have not changed.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(python3 python3-venv python3-pip git make zip unzip rsync openssl
              docker.io debootstrap iptables procps iproute2 ca-certificates
              chromium chromium-driver libnss3-tools pebble)
# Collections unpacked from the ansible wheel: what the roles, playbooks and Molecule use (and
# community.library_inventory_filtering_v1, a dependency of community.docker).
COLLECTIONS=(ansible.posix ansible.utils community.docker community.library_inventory_filtering_v1
             community.general azure.azcollection community.crypto amazon.aws)

# pip, quiet, without the noise about index folders that do not exist on every machine.
pipq() {
  "$VENV/bin/python" -m pip "$@" -q --disable-pip-version-check \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root or install them"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(cat "$CONSTRAINTS" "$ROOT/requirements/dev.txt" | sha256sum | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "creating virtualenv $VENV with pinned packages"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # torch first and alone: pinned, pip takes the CPU build rather than a CUDA one that
  # another package's bare `torch` requirement would resolve to.
  pipq install -c "$CONSTRAINTS" "$(grep '^torch==' "$CONSTRAINTS")"
  pipq install -c "$CONSTRAINTS" -r "$ROOT/requirements/dev.txt"
  echo "$want" > "$stamp"
}

install_collections() {
  local version stamp want wheel
  version=$(sed -n 's/^ansible==//p' "$CONSTRAINTS")
  stamp="$COLLECTIONS_DIR/.stamp"
  want="ansible-$version ${COLLECTIONS[*]}"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$CACHE/downloads"
    wheel="$CACHE/downloads/ansible-$version-py3-none-any.whl"
    if [ ! -s "$wheel" ]; then
      log "downloading the ansible $version wheel for its collections"
      pipq download --no-deps -d "$CACHE/downloads" "ansible==$version"
    fi
    log "unpacking collections: ${COLLECTIONS[*]}"
    rm -rf "$COLLECTIONS_DIR/ansible_collections"
    mkdir -p "$COLLECTIONS_DIR"
    local patterns=()
    for c in "${COLLECTIONS[@]}"; do patterns+=("ansible_collections/${c/./\/}/*"); done
    "$VENV/bin/python" - "$wheel" "$COLLECTIONS_DIR" "${patterns[@]}" <<'PY'
import fnmatch, sys, zipfile
wheel, dest, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if any(fnmatch.fnmatch(n, p) for p in patterns)]
    zf.extractall(dest, names)
PY
    echo "$want" > "$stamp"
  fi
  # This checkout is the collection federated.nvflare.
  mkdir -p "$COLLECTIONS_DIR/ansible_collections/federated"
  ln -sfn "$ROOT" "$COLLECTIONS_DIR/ansible_collections/federated/nvflare"
}

install_apt
install_venv
install_collections
log "bootstrap complete ($VENV)"
