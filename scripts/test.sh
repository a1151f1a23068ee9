#!/usr/bin/env bash
# The README's test command: every layer of the suite, in order, each timed. A failing
# layer does not stop the later ones (one run shows every problem), but the exit status is
# non-zero when any layer failed.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# The time budget of the whole suite from a fresh clone on a 2-core machine (CI allows 90 minutes).
BUDGET_SECONDS=${NVFLARE_TEST_BUDGET_SECONDS:-3600}

declare -a names=() secs=() results=() tests=()
failed=0
started_docker=0
# Each pytest run appends its counts here (tests/helpers/skip_policy.py); molecule.sh writes
# its scenario lines.
export NVFLARE_TEST_REPORT_DIR="$ROOT/tests/output/report"
rm -rf "$NVFLARE_TEST_REPORT_DIR"
mkdir -p "$NVFLARE_TEST_REPORT_DIR"

layer() {
  local name=$1; shift
  local t0=$SECONDS rc=0 slug
  slug=$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '-')
  printf '\n######## %s ########\n' "$name"
  NVFLARE_TEST_COUNTS="$NVFLARE_TEST_REPORT_DIR/$slug.jsonl" "$@" || rc=$?
  names+=("$name"); secs+=($((SECONDS - t0)))
  if [ "$rc" -eq 0 ]; then results+=("ok"); else results+=("FAILED ($rc)"); failed=1; fi
  if [ "$name" = molecule ]; then
    tests+=("$(scripts/test_counts.py row "$NVFLARE_TEST_REPORT_DIR/molecule-counts.jsonl")")
  else
    tests+=("$(scripts/test_counts.py row "$NVFLARE_TEST_REPORT_DIR/$slug.jsonl")")
  fi
  return 0
}

summary() {
  printf '\n%-24s %8s  %-12s %s\n' "layer" "seconds" "result" "tests"
  local i
  for i in "${!names[@]}"; do
    printf '%-24s %8s  %-12s %s\n' "${names[$i]}" "${secs[$i]}" "${results[$i]}" "${tests[$i]}"
    if [ "${names[$i]}" = molecule ] && [ -f "$NVFLARE_TEST_REPORT_DIR/molecule.txt" ]; then
      sed 's/^/    /' "$NVFLARE_TEST_REPORT_DIR/molecule.txt"
    fi
  done
  printf '%-24s %8s  (budget %s s: %s %%; CI stops at 5400 s)\n' "total" "$SECONDS" "$BUDGET_SECONDS" \
    "$((SECONDS * 100 / BUDGET_SECONDS))"
  if [ "$SECONDS" -gt "$BUDGET_SECONDS" ]; then
    echo "WARNING: the suite took longer than its budget of $BUDGET_SECONDS s" >&2
  fi
  [ "$started_docker" = 1 ] && "$ROOT/scripts/docker.sh" stop || true
}
trap summary EXIT

layer "setup: bootstrap"      scripts/bootstrap.sh
use_venv
layer "setup: wheelhouse"     scripts/wheelhouse.sh
layer "static: lint"          scripts/lint.sh
layer "static: sanity"        scripts/sanity.sh
layer "static: build"         scripts/build.sh
layer "static: galaxy-importer" scripts/galaxy-importer.sh
layer "static: execution env" scripts/ee.sh
layer "static: docs"          env NVFLARE_DOCS_OFFLINE=1 scripts/docs.sh
layer "unit"                  scripts/pytest.sh tests/unit
layer "functional"            scripts/pytest.sh tests/functional --durations=12
if ! timeout 10 docker info >/dev/null 2>&1; then
  layer "setup: dockerd"      scripts/docker.sh start
  started_docker=1
fi
layer "setup: base image"     scripts/base-image.sh
layer "container"             scripts/pytest.sh tests/container --durations=12
layer "molecule"              scripts/molecule.sh

trap - EXIT
summary
# One closing line over every layer's tests.
scripts/test_counts.py closing "$NVFLARE_TEST_REPORT_DIR"
if [ "$failed" -ne 0 ]; then
  echo "make test: FAILED (see the layers above)" >&2
  exit 1
fi
echo "make test: all layers passed"
