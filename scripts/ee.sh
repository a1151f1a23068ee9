#!/usr/bin/env bash
# The execution environment (meta/execution-environment.yml): ansible-builder writes its build
# context, and the checks below read it. Building the image needs the base image from a registry
# and is not run here; `podman build DIR/context` (or docker) does it.
#   scripts/ee.sh            the context in a temporary folder, removed afterwards (make test)
#   scripts/ee.sh dist/ee    the context kept in dist/ee/context (make ee)
# Offline; ansible-builder comes from the galaxy-importer virtualenv (requirements/galaxy-importer.txt).
source "$(dirname "$0")/lib.sh"
use_venv
cd "$ROOT"

venv="$CACHE/galaxy-importer-venv"
tool_venv "$venv" "$ROOT/requirements/galaxy-importer.txt"

# ansible-builder resolves the definition's paths from the folder of the definition, and the
# collection's (the same `dependencies`) from the collection root: the definition is staged at
# the root of the output folder with the files it names, as they lie in the collection.
work=$(mktemp -d "${TMPDIR:-/tmp}/nvflare-ee.XXXXXX")
trap 'rm -rf "$work"' EXIT
out="${1:-$work/ee}"
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
cp meta/execution-environment.yml "$out/"
for f in $(python - <<'PY'
import yaml
deps = yaml.safe_load(open("meta/execution-environment.yml"))["dependencies"]
print(deps["python"], deps["system"])
PY
); do
  [ -f "$f" ] || die "meta/execution-environment.yml names $f, which does not exist"
  mkdir -p "$(dirname "$out/$f")" && cp "$f" "$out/$f"
done
"$venv/bin/ansible-builder" create -f "$out/execution-environment.yml" -c "$out/context" \
  --output-filename Containerfile -v1 >"$out/create.log" 2>&1 \
  || { cat "$out/create.log" >&2; die "ansible-builder create failed"; }

# What an image build would run ansible-builder's introspection on: this collection installed
# (the working tree), whose meta/execution-environment.yml it reads from the collection root.
mkdir -p "$work/ansible_collections/federated"
ln -s "$ROOT" "$work/ansible_collections/federated/nvflare"
"$venv/bin/ansible-builder" introspect "$work" --write-pip "$work/pip.txt" --write-bindep "$work/bindep.txt" \
  >"$work/introspect.log" 2>&1 || { cat "$work/introspect.log" >&2; die "ansible-builder introspect failed"; }

python - "$out/context" "$work" <<'PY'
import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

context, introspected = Path(sys.argv[1]), Path(sys.argv[2])
definition = yaml.safe_load(open("meta/execution-environment.yml"))
deps = definition["dependencies"]
errors = []


def lines(path):
    """A requirements or bindep file without comments and blank lines."""
    return [re.sub(r"\s+#.*", "", line).strip() for line in open(path) if line.strip() and not line.startswith("#")]


containerfile = (context / "Containerfile").read_text()
base = definition["images"]["base_image"]["name"]
if f'ARG EE_BASE_IMAGE="{base}"' not in containerfile:
    errors.append(f"the Containerfile does not start from {base}")
# The Python and system requirements landed in the context, and the collection's own
# introspection (what the image build runs) finds the same ones from the collection root.
for key, name, found in (("python", "requirements.txt", "pip.txt"), ("system", "bindep.txt", "bindep.txt")):
    want = lines(deps[key])
    if not want:
        errors.append(f"{deps[key]} is empty")
    if lines(context / "_build" / name) != want:
        errors.append(f"_build/{name} of the context differs from {deps[key]}")
    if lines(introspected / found) != want:
        errors.append(f"introspection of the installed collection does not find {deps[key]}")

# The collection and its version, as galaxy.yml says.
galaxy = yaml.safe_load(open("galaxy.yml"))
fqcn = f"{galaxy['namespace']}.{galaxy['name']}"
collections = {c["name"]: c.get("version") for c in yaml.safe_load((context / "_build/requirements.yml").read_text())["collections"]}
if collections.get(fqcn) != galaxy["version"]:
    errors.append(f"the context installs {fqcn} {collections.get(fqcn)}, galaxy.yml says {galaxy['version']}")

# The versions the tests ran with (requirements/constraints.txt) satisfy every requirement.
pins = {}
for line in lines("requirements/constraints.txt"):
    name, _, version = line.partition("==")
    pins[name.lower().replace("_", "-")] = version
core = Requirement(deps["ansible_core"]["package_pip"])
if str(core.specifier) != f"=={pins['ansible-core']}":
    errors.append(f"the definition installs {core}, the tests run ansible-core=={pins['ansible-core']}")
if f"{core}" not in containerfile:
    errors.append(f"the Containerfile does not install {core}")
for line in lines(deps["python"]):
    req = Requirement(line)
    pin = pins.get(req.name.lower().replace("_", "-"))
    if pin is None:
        errors.append(f"{req.name} ({deps['python']}) has no pin in requirements/constraints.txt")
    elif not req.specifier.contains(pin, prereleases=True):
        errors.append(f"{req} ({deps['python']}) does not admit {req.name}=={pin} of requirements/constraints.txt")

for error in errors:
    print(f"ERROR: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
count() { grep -vcE '^[[:space:]]*(#|$)' "$1"; }
log "execution environment: build context in ${1:-a temporary folder}${1:+/context} ($(count meta/ee-requirements.txt) Python" \
  "requirements, $(count meta/ee-bindep.txt) system packages, collection $(python -c \
  'import yaml; g = yaml.safe_load(open("galaxy.yml")); print(g["namespace"] + "." + g["name"], g["version"])'))"
