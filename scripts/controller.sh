#!/usr/bin/env bash
# `make controller`: makes this clone a ready Ansible controller for federated.nvflare, as an
# ordinary user (no root, no system package): the virtualenv .venv with the pinned ansible-core,
# NVFlare (provisioning runs on the controller), boto3 and the other Python packages of
# meta/ee-requirements.txt, and the collections the playbooks use, unpacked into
# .venv/collections beside a link that makes this clone federated.nvflare. The clone's
# ansible.cfg names that folder, so that `ansible-playbook playbooks/site.yml` run from the clone
# finds everything with no environment variable set.
#   make controller                 AWS, on-prem, Slurm, the dashboard path
#   make controller AZURE=1         the same, plus azure.azcollection and its Python SDK (large)
#   make controller PYTHON=python3.12   another interpreter (3.11 or newer)
#   scripts/controller.sh venv      only the interpreter's checks and the empty virtualenv
# It writes only under the clone (and pip's cache in your home folder). Re-running skips what is
# in place.
source "$(dirname "$0")/lib.sh"

# The collections that the content uses on the controller (galaxy.yml's dependencies, and
# community.docker's own dependency).
CONTROLLER_COLLECTIONS=(amazon.aws ansible.utils community.crypto community.docker
                        community.library_inventory_filtering_v1)
PYTHON=${PYTHON:-python3}
AZURE=${AZURE:-}

# The interpreter: ansible-core 2.19 runs on Python 3.11 to 3.13 on the controller.
check_python() {
  local version
  command -v "$PYTHON" >/dev/null 2>&1 ||
    die "no '$PYTHON' on PATH. Install Python 3.11 or newer (Debian 12 / Ubuntu 24.04: sudo apt-get install python3 python3-venv), or name one: make controller PYTHON=/path/to/python3.11"
  version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is Python $version; the controller needs 3.11 or newer (ansible-core 2.19). Install one (Ubuntu 22.04: sudo apt-get install python3.11 python3.11-venv) and run: make controller PYTHON=python3.11"
  if "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 14))'; then
    log "warning: $PYTHON is Python $version; ansible-core 2.19 supports 3.11 to 3.13 on the controller (tested: 3.11)"
  fi
  PYTHON_VERSION=$version
}

make_venv() {
  [ -x "$VENV/bin/python" ] && return 0
  log "creating the virtualenv $VENV (Python $PYTHON_VERSION)"
  local out
  if ! out=$("$PYTHON" -m venv "$VENV" 2>&1); then
    rm -rf "$VENV"
    printf '%s\n' "$out" >&2
    die "$PYTHON cannot create a virtualenv (its venv/ensurepip module is missing). Debian/Ubuntu: sudo apt-get install python3-venv (or python$PYTHON_VERSION-venv), then run make controller again"
  fi
}

install_packages() {
  local stamp="$VENV/.controller.sha256" want core azure_req=""
  [ -n "$AZURE" ] && azure_req="$COLLECTIONS_DIR/ansible_collections/azure/azcollection/requirements.txt"
  want=$(cat "$CONSTRAINTS" "$ROOT/meta/ee-requirements.txt" ${azure_req:+"$azure_req"} | sha256sum | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  core=$(grep '^ansible-core==' "$CONSTRAINTS")
  log "installing $core, NVFlare and the controller's Python packages into $VENV"
  pipq install -c "$CONSTRAINTS" "$core" -r "$ROOT/meta/ee-requirements.txt"
  if [ -n "$azure_req" ]; then
    # Azure's SDK comes with pins of its own (azure.azcollection's requirements.txt).
    log "installing the Azure SDK that azure.azcollection names (about 1.5 GB)"
    pipq install -r "$azure_req"
  fi
  echo "$want" > "$stamp"
}

check_python
make_venv
[ "${1:-}" = venv ] && exit 0
collections=("${CONTROLLER_COLLECTIONS[@]}")
[ -n "$AZURE" ] && collections+=(azure.azcollection)
install_collections "${collections[@]}"
install_packages
cat <<MSG
The controller is ready: $VENV (ansible-core $("$VENV/bin/python" -c 'from ansible.release import __version__; print(__version__)'),
NVFlare $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("nvflare"))'), collections in $COLLECTIONS_DIR).
From this folder:
  source .venv/bin/activate
  ansible-playbook playbooks/site.yml -i <your inventory>
MSG
