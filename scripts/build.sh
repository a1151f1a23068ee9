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

# The collections galaxy.yml declares, and those the shipped content uses. azure.azcollection is
# optional by design (only the Azure role, playbooks and inventory use it; its SDK is large).
OPTIONAL="azure.azcollection"
declared=$(python - <<'PY'
import yaml
print(" ".join(sorted((yaml.safe_load(open("galaxy.yml")).get("dependencies") or {}))))
PY
)
used=""
for dir in "$COLLECTIONS_DIR"/ansible_collections/*/*; do
  fqcn="$(basename "$(dirname "$dir")").$(basename "$dir")"
  [ "$fqcn" = federated.nvflare ] && continue
  if grep -rqF "$fqcn." roles plugins playbooks inventories meta 2>/dev/null; then used="$used $fqcn"; fi
done
for fqcn in $used; do
  case " $declared $OPTIONAL " in
    *" $fqcn "*) ;;
    *) die "the collection uses $fqcn but galaxy.yml does not declare it in dependencies" ;;
  esac
done

# Install the tarball WITH its dependencies, resolved offline from the collections of the
# virtualenv (as from a local mirror), so that a missing or unsatisfiable dependency fails here.
# The mirror offers the declared collections and, in turn, what they depend on.
closure=$(python - "$COLLECTIONS_DIR/ansible_collections" $declared <<'PY'
import json, os, sys
root, todo, seen = sys.argv[1], list(sys.argv[2:]), set()
while todo:
    fqcn = todo.pop()
    if fqcn in seen:
        continue
    seen.add(fqcn)
    manifest = os.path.join(root, *fqcn.split("."), "MANIFEST.json")
    if os.path.exists(manifest):
        todo.extend(json.load(open(manifest))["collection_info"].get("dependencies") or {})
print(" ".join(sorted(seen)))
PY
)
requirements="$empty/requirements.yml"
{
  echo "collections:"
  printf '  - name: %s\n    type: file\n' "$ROOT/$tarball"
  for fqcn in $closure; do
    printf '  - name: %s\n    type: dir\n' "$COLLECTIONS_DIR/ansible_collections/${fqcn/.//}"
  done
} > "$requirements"
ANSIBLE_COLLECTIONS_PATH="$empty" ansible-galaxy collection install --offline --force -r "$requirements" -p "$empty" \
  >"$empty/install.log" 2>&1 || { cat "$empty/install.log" >&2; die "the tarball did not install with its dependencies"; }
installed="$empty/ansible_collections/federated/nvflare"
[ -f "$installed/MANIFEST.json" ] || die "the tarball did not install into $empty"
for unwanted in tests molecule scripts .venv conftest.py; do
  [ ! -e "$installed/$unwanted" ] || die "the tarball carries $unwanted (see build_ignore)"
done

# Every playbook of the installed collection parses and resolves its modules and roles with the
# declared dependencies alone, except those that fail on the optional collection only: they must
# parse once it is added.
syntax_ok() {
  ANSIBLE_COLLECTIONS_PATH="$empty" ansible-playbook --syntax-check -i localhost, "$1" >"$empty/syntax.log" 2>&1
}
deferred=()
for playbook in "$installed"/playbooks/*.yml; do
  syntax_ok "$playbook" && continue
  if grep -q "couldn't resolve module/action '$OPTIONAL\." "$empty/syntax.log"; then
    deferred+=("$playbook")
    continue
  fi
  cat "$empty/syntax.log" >&2
  die "$(basename "$playbook") does not parse with the installed collection and its dependencies"
done
ANSIBLE_COLLECTIONS_PATH="$empty" ansible-galaxy collection install --offline -p "$empty" \
  "$COLLECTIONS_DIR/ansible_collections/${OPTIONAL/.//}" >/dev/null 2>&1 || die "could not add $OPTIONAL"
for playbook in "${deferred[@]}"; do
  syntax_ok "$playbook" || { cat "$empty/syntax.log" >&2; die "$(basename "$playbook") does not parse with $OPTIONAL"; }
done
log "installed with dependencies:$(printf ' %s' $declared); every playbook parses (${#deferred[@]} with $OPTIONAL)"

modules=$(ANSIBLE_COLLECTIONS_PATH="$empty" ansible-doc -t module -l federated.nvflare | awk '{print $1}')
roles=$(ANSIBLE_COLLECTIONS_PATH="$empty" ansible-doc -t role -l federated.nvflare | grep '^federated.nvflare' || true)
[ -n "$roles" ] || die "ansible-doc found no role of federated.nvflare in the installed tarball"
for m in $modules; do
  ANSIBLE_COLLECTIONS_PATH="$empty" ansible-doc -t module "$m" >/dev/null || die "ansible-doc cannot render $m"
done
log "installed tarball: ansible-doc lists $(echo "$modules" | grep -c . || true) modules and $(echo "$roles" | grep -c . || true) roles"
