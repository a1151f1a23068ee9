#!/usr/bin/env bash
# Installs what one use of this clone needs, and nothing twice. Re-running is cheap: each step is
# skipped when its inputs have not changed.
#   scripts/bootstrap.sh demo        `make demo`: a few Debian packages and the controller
#                                    (scripts/controller.sh: .venv with ansible-core, NVFlare and
#                                    the collections the playbooks use)
#   scripts/bootstrap.sh container   `make demo RUNTIME=container`: the same, plus Docker and
#                                    debootstrap for the participants' image, the Docker SDK
#   scripts/bootstrap.sh [test]      `make test` and the developer targets: everything above plus
#                                    the test tools (Molecule, pytest, linters, moto, PyTorch,
#                                    Chromium, pebble) and the collections Molecule uses
source "$(dirname "$0")/lib.sh"

profile=${1:-test}
APT_DEMO=(python3 python3-venv git make zip unzip openssl procps iproute2 ca-certificates)
APT_CONTAINER=(docker.io debootstrap iptables)
APT_TEST=(python3-pip rsync chromium chromium-driver libnss3-tools pebble)
# Beyond the controller's collections: what Molecule, the tests and the syntax checks of the
# optional Azure content use.
TEST_COLLECTIONS=(ansible.posix community.general azure.azcollection)

case "$profile" in
  demo) apt_packages=("${APT_DEMO[@]}") ;;
  container) apt_packages=("${APT_DEMO[@]}" "${APT_CONTAINER[@]}") ;;
  test) apt_packages=("${APT_DEMO[@]}" "${APT_CONTAINER[@]}" "${APT_TEST[@]}") ;;
  *) die "usage: scripts/bootstrap.sh [demo|container|test], not '$profile'" ;;
esac

install_apt() {
  local missing=()
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root or install them"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The Docker SDK that community.docker's modules import on the controller (container runtime).
install_docker_sdk() {
  "$VENV/bin/python" -c 'import docker, requests' 2>/dev/null && return 0
  pipq install -c "$CONSTRAINTS" docker requests
}

install_test_tools() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(cat "$CONSTRAINTS" "$ROOT/requirements/dev.txt" | sha256sum | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  log "installing the test tools into $VENV (pinned)"
  # torch first and alone: pinned, pip takes the CPU build rather than a CUDA one that
  # another package's bare `torch` requirement would resolve to.
  pipq install -c "$CONSTRAINTS" "$(grep '^torch==' "$CONSTRAINTS")"
  pipq install -c "$CONSTRAINTS" -r "$ROOT/requirements/dev.txt"
  echo "$want" > "$stamp"
}

install_apt
case "$profile" in
  demo)
    # The demo's wheelhouse downloads while the controller's packages install: about half the
    # set-up time of one after the other on a new machine.
    "$ROOT/scripts/controller.sh" venv
    "$ROOT/scripts/wheelhouse.sh" demo & wheelhouse=$!
    rc=0
    "$ROOT/scripts/controller.sh" >/dev/null || rc=$?
    wait "$wheelhouse" || rc=$?
    [ "$rc" -eq 0 ] || die "the demo's set-up failed (see above)"
    ;;
  *) "$ROOT/scripts/controller.sh" >/dev/null ;;
esac
case "$profile" in
  container) install_docker_sdk ;;
  test)
    install_test_tools
    install_collections "${TEST_COLLECTIONS[@]}"
    ;;
esac
log "bootstrap ($profile) complete ($VENV)"
