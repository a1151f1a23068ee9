#!/usr/bin/env bash
# The README's test command: every layer of the suite, in order, each timed. A failing
# layer does not stop the later ones (one run shows every problem), but the exit status is
# non-zero when any layer failed.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

declare -a names=() secs=() results=()
failed=0
started_docker=0

layer() {
  local name=$1; shift
  local t0=$SECONDS rc=0
  printf '\n######## %s ########\n' "$name"
  "$@" || rc=$?
  names+=("$name"); secs+=($((SECONDS - t0)))
  if [ "$rc" -eq 0 ]; then results+=("ok"); else results+=("FAILED ($rc)"); failed=1; fi
  return 0
}

summary() {
  printf '\n%-28s %8s  %s\n' "layer" "seconds" "result"
  local i
  for i in "${!names[@]}"; do
    printf '%-28s %8s  %s\n' "${names[$i]}" "${secs[$i]}" "${results[$i]}"
  done
  printf '%-28s %8s\n' "total" "$SECONDS"
  [ "$started_docker" = 1 ] && "$ROOT/scripts/docker.sh" stop || true
}
trap summary EXIT

layer "setup: bootstrap"      scripts/bootstrap.sh
use_venv
layer "setup: wheelhouse"     scripts/wheelhouse.sh
layer "static: lint"          scripts/lint.sh
layer "static: sanity"        scripts/sanity.sh
layer "static: build"         scripts/build.sh
layer "unit"                  scripts/pytest.sh tests/unit
layer "functional"            scripts/pytest.sh tests/functional
if ! timeout 10 docker info >/dev/null 2>&1; then
  layer "setup: dockerd"      scripts/docker.sh start
  started_docker=1
fi
layer "setup: base image"     scripts/base-image.sh
layer "molecule"              scripts/molecule.sh

trap - EXIT
summary
if [ "$failed" -ne 0 ]; then
  echo "make test: FAILED (see the layers above)" >&2
  exit 1
fi
echo "make test: all layers passed"
