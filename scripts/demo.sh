#!/usr/bin/env bash
# The README's first command: a whole federation on this machine (server, site-1, site-2,
# admin), the synthetic MONAI spleen segmentation job for 2 rounds, and its cross-site
# validation printed. `scripts/demo.sh stop` (make demo-stop) stops it.
# RUNTIME=process (the default) runs each participant as a plain process of this machine;
# RUNTIME=container runs the server and the sites in containers on this machine's Docker engine
# (inventories/container), from an image built from the Debian 12 base image and the wheelhouse.
source "$(dirname "$0")/lib.sh"
use_venv
cd "$ROOT"
runtime=${RUNTIME:-process}
case "$runtime" in
  process) inventory="$ROOT/inventories/local/hosts.yml" ;;
  container) inventory="$ROOT/inventories/container/hosts.yml" ;;
  *) die "RUNTIME must be process or container, not '$runtime'" ;;
esac
results=/var/lib/nvflare/admin-results

if [ "${1:-}" = "stop" ]; then
  ansible-playbook -i "$inventory" playbooks/stop.yml
  echo "The demo federation is stopped. 'make demo${RUNTIME:+ RUNTIME=$RUNTIME}' starts it again."
  exit 0
fi

[ -s "$WHEELHOUSE/.complete-demo" ] || die "no wheelhouse at $WHEELHOUSE: run 'scripts/wheelhouse.sh demo' (make demo does)"
if [ "$runtime" = container ]; then
  timeout 10 docker info >/dev/null 2>&1 || die "no Docker engine answers: run 'make docker-start'"
  # The Debian 12 image the participants' image starts from (built once, from Debian's packages).
  scripts/base-image.sh systemd
fi
t0=$SECONDS
ansible-playbook -i "$inventory" playbooks/site.yml -e nvflare_submit_job=true
python - "$results/spleen_ct_segmentation.json" <<'PY'
import json
import sys

summary = json.load(open(sys.argv[1]))
print()
print(f"Job {summary.get('job_id')}: {summary.get('status')} in {summary.get('duration')}")
matrix = summary.get("cross_site_validation") or {}
# {model: {site: {metric: value}}}: one row per model, one column per validating site.
sites = sorted({site for per_site in matrix.values() for site in per_site})
print()
print("Cross-site validation, mean Dice (rows: models, columns: the site that validated)")
print(f"{'model':<28}" + "".join(f"{s:>12}" for s in sites))
for model in sorted(matrix):
    cells = []
    for s in sites:
        metrics = matrix[model].get(s) or {}
        value = next(iter(metrics.values()), None) if metrics else None
        cells.append(f"{value:>12.4f}" if isinstance(value, (int, float)) else f"{'-':>12}")
    print(f"{model:<28}" + "".join(cells))
print()
print(f"Results (models, server log): {summary.get('result_dir')}")
curves = f"{summary.get('result_dir')}/training_curves.png"
try:
    with open(curves, "rb") as png:
        drawn = png.read(8) == b"\x89PNG\r\n\x1a\n"
except OSError:
    drawn = False
print(f"Training curves (Dice per round): {curves if drawn else 'none were drawn'}")
PY
if [ "$runtime" = container ]; then
  logs="docker logs nvflare-localhost, nvflare-site-1, nvflare-site-2"
else
  logs="/var/lib/nvflare/{localhost,site-1,site-2}/service.log"
fi
cat <<MSG
Client logs:   /var/lib/nvflare/site-1/<job id>/log.txt, /var/lib/nvflare/site-2/<job id>/log.txt
Service logs:  $logs
Deployed in:   $((SECONDS - t0)) s
Stop it with:  make demo-stop${RUNTIME:+ RUNTIME=$RUNTIME}
MSG
