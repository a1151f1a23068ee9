#!/usr/bin/env bash
# Download, once, the Python packages the managed hosts install into a wheelhouse folder
# (default .cache/wheelhouse, or $NVFLARE_WHEELHOUSE), so hosts install with
# `pip install --no-index --find-links WHEELHOUSE`: the test hosts, which have no egress,
# and air-gapped sites (HPC compute nodes, hospital networks).
#   scripts/wheelhouse.sh demo   what the demo's participants install: the server's and the
#                                sites' packages (NVFlare, PyTorch, MONAI, matplotlib)
#   scripts/wheelhouse.sh [all]  everything any role installs: also TenSEAL (nvflare_he), MLflow
#                                (nvflare_mlflow), the dashboard's and certbot's packages
# Source distributions are turned into wheels here, so hosts need no build tools.
source "$(dirname "$0")/lib.sh"
use_venv

set_name=${1:-all}
HOSTS="$ROOT/requirements/hosts"
case "$set_name" in
  demo) files=("$HOSTS/server.txt" "$HOSTS/client.txt") ;;
  all) files=("$HOSTS"/*.txt) ;;
  *) die "usage: scripts/wheelhouse.sh [demo|all], not '$set_name'" ;;
esac

# A set is complete when its stamp holds the digest of its inputs; `all` completes `demo` too.
digest() { cat "$CONSTRAINTS" "$ROOT/requirements/mlflow-constraints.txt" "$@" "$0" | sha256sum | cut -d' ' -f1; }
want=$(digest "${files[@]}")
stamp="$WHEELHOUSE/.complete-$set_name"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
mkdir -p "$WHEELHOUSE"
rm -f "$stamp"

log "filling the wheelhouse $WHEELHOUSE with the '$set_name' packages (once; cached)"
# torch first and alone, pinned, so that pip takes the CPU build (2.13.0+cpu) rather than
# resolving a multi-GB CUDA build through another package's requirement.
torch=$(grep '^torch==' "$CONSTRAINTS")
pipq download -d "$WHEELHOUSE" -c "$CONSTRAINTS" "$torch"
for req in "${files[@]}"; do
  # The MLflow server has pins of its own (an older gunicorn than the dashboard's).
  pins=$CONSTRAINTS
  [ "$(basename "$req")" = mlflow.txt ] && pins=$ROOT/requirements/mlflow-constraints.txt
  pipq download -d "$WHEELHOUSE" -c "$pins" -r "$req"
done
# Pure-Python sdists become wheels now, while an index (and setuptools) is reachable.
shopt -s nullglob
for sdist in "$WHEELHOUSE"/*.tar.gz "$WHEELHOUSE"/*.zip; do
  pipq wheel --no-deps -w "$WHEELHOUSE" "$sdist"
  rm -f "$sdist"
done
echo "$want" > "$stamp"
[ "$set_name" = all ] && digest "$HOSTS/server.txt" "$HOSTS/client.txt" > "$WHEELHOUSE/.complete-demo"
log "wheelhouse ready: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
