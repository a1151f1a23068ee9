#!/usr/bin/env bash
# Galaxy's own import checks (galaxy-importer) on the built tarball, as Galaxy runs them when
# the collection is published: documentation of every module and role, a README for every
# role, ansible-lint. galaxy-importer lives in a virtualenv of its own (its pins conflict with
# the main ones), rebuilt when requirements/galaxy-importer.txt changes (tool_venv in lib.sh).
source "$(dirname "$0")/lib.sh"
use_venv
cd "$ROOT"

venv="$CACHE/galaxy-importer-venv"
tool_venv "$venv" "$ROOT/requirements/galaxy-importer.txt"

tarball=$(ls dist/federated-nvflare-*.tar.gz 2>/dev/null | head -1)
if [ -z "$tarball" ]; then
  "$ROOT/scripts/build.sh"
  tarball=$(ls dist/federated-nvflare-*.tar.gz)
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/nvflare-importer.XXXXXX")
trap 'rm -rf "$out"' EXIT
# Its own ansible-doc and ansible-lint come first on PATH; it reads no collection of ours.
rc=0
(cd "$out" && PATH="$venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$out/collections" \
  GALAXY_IMPORTER_CONFIG="$ROOT/.config/galaxy-importer.cfg" \
  "$venv/bin/python" -m galaxy_importer.main "$ROOT/$tarball") >"$out/importer.log" 2>&1 || rc=$?
grep -E '^(WARNING|ERROR)' "$out/importer.log" >&2 || true
if [ "$rc" -ne 0 ] || ! grep -q '^Importer processing completed successfully' "$out/importer.log"; then
  tail -n 20 "$out/importer.log" >&2
  die "galaxy-importer rejected $tarball"
fi
log "galaxy-importer accepts $tarball ($(grep -c '^WARNING' "$out/importer.log" || true) warnings)"
