#!/usr/bin/env bash
# Build the collection tarball, install it into an empty collections path and check that
# ansible-doc finds its content there.
source "$(dirname "$0")/lib.sh"
use_venv
cd "$ROOT"
rm -rf dist && mkdir -p dist
ansible-galaxy collection build --force --output-path dist . >/dev/null
tarball=$(ls dist/federated-nvflare-*.tar.gz)
log "built $tarball ($(du -h "$tarball" | cut -f1))"
empty=$(mktemp -d "${TMPDIR:-/tmp}/nvflare-install.XXXXXX")
trap 'rm -rf "$empty"' EXIT
ANSIBLE_COLLECTIONS_PATH="$empty" ansible-galaxy collection install --force --no-deps -p "$empty" "$tarball" >/dev/null
installed="$empty/ansible_collections/federated/nvflare"
[ -f "$installed/MANIFEST.json" ] || die "the tarball did not install into $empty"
for unwanted in tests molecule scripts .venv; do
  [ ! -e "$installed/$unwanted" ] || die "the tarball carries $unwanted/ (see build_ignore)"
done
modules=$(ANSIBLE_COLLECTIONS_PATH="$empty" ansible-doc -t module -l federated.nvflare | awk '{print $1}')
roles=$(ANSIBLE_COLLECTIONS_PATH="$empty" ansible-doc -t role -l federated.nvflare | grep '^federated.nvflare' || true)
[ -n "$roles" ] || die "ansible-doc found no role of federated.nvflare in the installed tarball"
for m in $modules; do
  ANSIBLE_COLLECTIONS_PATH="$empty" ansible-doc -t module "$m" >/dev/null || die "ansible-doc cannot render $m"
done
log "installed tarball: ansible-doc lists $(echo "$modules" | grep -c . || true) modules and $(echo "$roles" | grep -c . || true) roles"
