#!/usr/bin/env bash
# Molecule scenarios on Docker systemd test hosts.
#   molecule.sh                        every scenario, one after the other; each runs to its end
#                                      even when an earlier one failed; one line per scenario
#                                      (seconds of converge / idempotence / verify, tests
#                                      passed/failed/skipped, result); fails if any failed
#   molecule.sh SCENARIO               that scenario's whole test sequence, step by step
#   molecule.sh SCENARIO COMMAND ARGS  one molecule command (e.g. `molecule.sh slurm converge
#                                      -- --check`, `molecule.sh dashboard verify`)
# Starts dockerd when it is not running (and stops it again afterwards if it did), builds
# the base image and the wheelhouse when they are missing.
# With NVFLARE_TEST_REPORT_DIR set, the scenario lines are also written to
# $NVFLARE_TEST_REPORT_DIR/molecule.txt and the verifiers' counts to molecule-counts.jsonl.
source "$(dirname "$0")/lib.sh"
use_venv

started_docker=0
if ! timeout 10 docker info >/dev/null 2>&1; then
  "$ROOT/scripts/docker.sh" start
  started_docker=1
fi
cleanup() { [ "$started_docker" = 1 ] && "$ROOT/scripts/docker.sh" stop; true; }
trap cleanup EXIT

"$ROOT/scripts/base-image.sh"
"$ROOT/scripts/wheelhouse.sh"

export NVFLARE_TEST_IMAGE="$BASE_IMAGE" NVFLARE_SLURM_IMAGE="$SLURM_IMAGE" NVFLARE_SSH_IMAGE="$SSH_IMAGE" \
  NVFLARE_POSTGRESQL_IMAGE="$POSTGRESQL_IMAGE"
# Molecule installs a copy of this collection under ANSIBLE_HOME: keep it apart from the
# developer tools (ansible-lint would otherwise read a stale copy).
export ANSIBLE_HOME="$CACHE/molecule-ansible-home"
export MOLECULE_NO_LOG=false
# Plain output in logs and CI.
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
cd "$ROOT"

# Molecule's own lines get the seconds elapsed since the start of this script.
stamp() {
  local line
  while IFS= read -r line; do
    case "$line" in
      INFO*|WARNING*|ERROR*) printf '[%5ds] %s\n' "$SECONDS" "$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

# One molecule command, its output stamped; the exit status is molecule's.
mol() {
  local rc=0
  set +e
  molecule "$@" 2>&1 | stamp
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

# The scenario's test sequence, as `molecule test` would run it.
sequence() {
  python - "$ROOT/molecule/$1/molecule.yml" <<'PY'
import sys, yaml
default = ["dependency", "cleanup", "destroy", "syntax", "create", "prepare", "converge",
           "idempotence", "side_effect", "verify", "cleanup", "destroy"]
conf = yaml.safe_load(open(sys.argv[1])) or {}
print(" ".join((conf.get("scenario") or {}).get("test_sequence") or default))
PY
}


# Run one scenario's sequence step by step (the same steps `molecule test` runs), so that each
# step's seconds and the step that failed are known. After a failure only the cleanup and
# destroy steps still run. Sets SCENARIO_LINE.
SCENARIO_LINE=""
run_scenario() {
  local scenario=$1 step t0 rc failed_step="" counts
  local -A took=()
  counts=$(mktemp)
  local t_start=$SECONDS
  for step in $(sequence "$scenario"); do
    if [ -n "$failed_step" ] && [ "$step" != cleanup ] && [ "$step" != destroy ]; then
      continue
    fi
    t0=$SECONDS
    printf '[%5ds] ==> molecule %s -s %s\n' "$SECONDS" "$step" "$scenario"
    rc=0
    # Steps are named as in test_sequence (side_effect); commands with a hyphen (side-effect).
    if [ "$step" = verify ]; then
      NVFLARE_TEST_COUNTS="$counts" mol "${step//_/-}" -s "$scenario" || rc=$?
    else
      mol "${step//_/-}" -s "$scenario" || rc=$?
    fi
    took[$step]=$(( ${took[$step]:-0} + SECONDS - t0 ))
    if [ "$rc" -ne 0 ] && [ -z "$failed_step" ]; then
      failed_step=$step
    fi
  done
  local passed failed skipped na result
  read -r passed failed skipped na < <("$ROOT/scripts/test_counts.py" fields "$counts")
  if [ -n "${NVFLARE_TEST_REPORT_DIR:-}" ]; then
    cat "$counts" >> "$NVFLARE_TEST_REPORT_DIR/molecule-counts.jsonl"
  fi
  rm -f "$counts"
  result=ok
  [ -n "$failed_step" ] && result="FAILED at $failed_step"
  SCENARIO_LINE=$(printf '%-10s %6ss  converge %4ss  idempotence %4ss  verify %4ss  tests %3s passed %2s failed %2s skipped (%s n/a)  %s' \
    "$scenario" "$((SECONDS - t_start))" "${took[converge]:--}" "${took[idempotence]:--}" "${took[verify]:--}" \
    "$passed" "$failed" "$skipped" "$na" "$result")
  [ -z "$failed_step" ]
}

if [ $# -ge 2 ]; then
  # One molecule command. The scenario option goes right after the command, before any extra
  # arguments (e.g. `molecule.sh slurm converge -- --check`).
  scenario=$1 command=$2
  shift 2
  mol "$command" -s "$scenario" "$@"
  exit $?
fi

if [ $# -eq 1 ]; then
  scenarios=("$1")
else
  mapfile -t scenarios < <(find "$ROOT/molecule" -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
    | xargs -n1 basename | sort)
fi
[ "${#scenarios[@]}" -gt 0 ] || die "no Molecule scenario found under $ROOT/molecule"

failed=0
lines=()
for scenario in "${scenarios[@]}"; do
  [ -f "$ROOT/molecule/$scenario/molecule.yml" ] || die "no Molecule scenario '$scenario' (molecule/$scenario/molecule.yml)"
  printf '\n######## molecule: %s ########\n' "$scenario"
  if run_scenario "$scenario"; then :; else failed=1; fi
  lines+=("$SCENARIO_LINE")
  printf '%s\n' "$SCENARIO_LINE"
done

printf '\nMolecule scenarios:\n'
printf '  %s\n' "${lines[@]}"
if [ -n "${NVFLARE_TEST_REPORT_DIR:-}" ]; then
  printf '%s\n' "${lines[@]}" >> "$NVFLARE_TEST_REPORT_DIR/molecule.txt"
fi
exit "$failed"
