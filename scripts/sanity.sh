#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as
# ansible_collections/federated/nvflare in a temporary folder (ansible-test needs that
# layout). ansible-test bootstraps pip from a host that is unreachable here, so its cache
# gets a pip 24.2 wheel and a small stand-in bootstrap script first.
source "$(dirname "$0")/lib.sh"
use_venv

# One run at a time: concurrent runs would share (and delete) each other's venvs.
mkdir -p "$CACHE"
exec 9>"$CACHE/sanity.lock"
flock 9
export HOME="$CACHE/ansible-test-home"   # ansible-test keeps its venvs and cache under ~/.ansible
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
if ! ls "$cache"/pip-24.2-*.whl >/dev/null 2>&1; then
  python -m pip download -q --disable-pip-version-check --no-deps -d "$cache" pip==24.2 \
    2> >(grep -v 'is ignored: it is neither' >&2)
fi
cat > "$cache/get_pip_24_2.py" <<'PY'
"""Stand-in for get-pip.py: install pip from the wheel cached beside this file."""
import glob
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, glob.glob(os.path.join(here, "pip-24.2-*.whl"))[0])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.argv = ["pip", "install", "--find-links", here] + args
from pip._internal.cli.main import main  # noqa: E402

sys.exit(main())
PY

work=$(mktemp -d "${TMPDIR:-/tmp}/nvflare-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/federated/nvflare"
mkdir -p "$tree"
# The collection content, without the developer tooling (which is not part of the
# collection: see build_ignore in galaxy.yml).
rsync -a --exclude-from=- "$ROOT/" "$tree/" <<'EXCLUDES'
/.git
/.venv
/.cache
/.ansible
/dist
/tests/output
/scripts
/bench
/molecule
/.ci
/Makefile
/conftest.py
/requirements
__pycache__
*.tar.gz
EXCLUDES
cd "$tree"
git init -q . && git add -A >/dev/null 2>&1 || true
ansible-test sanity --python 3.11 --venv --requirements --color no "$@"
