#!/usr/bin/env bash
# Build the systemd-in-Docker base image for Molecule test hosts from Debian's own
# packages (debootstrap), because no container registry is reachable. Skipped when the
# image already exists.
source "$(dirname "$0")/lib.sh"

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap not found: run 'make bootstrap'"
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/nvflare-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
log "building $BASE_IMAGE with debootstrap (1-2 minutes)"
debootstrap --variant=minbase \
  --include=python3,python3-apt,python3-venv,systemd,systemd-sysv,dbus,sudo,iproute2,procps,ca-certificates \
  bookworm "$rootfs" >"$CACHE/debootstrap.log" 2>&1 \
  || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (see $CACHE/debootstrap.log)"; }
: > "$rootfs/etc/machine-id"
for unit in getty.target systemd-udevd.service systemd-udevd-control.socket \
            systemd-udevd-kernel.socket systemd-timesyncd.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' - "$BASE_IMAGE" >/dev/null
log "built $BASE_IMAGE"
