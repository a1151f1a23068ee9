#!/usr/bin/env bash
# Build the systemd-in-Docker images for Molecule test hosts from Debian's own packages
# (debootstrap, then apt-get in a chroot for the extras), because no container registry is
# reachable.
#   base-image.sh            every image below
#   base-image.sh FLAVOUR    one of them
# Flavours: systemd (every test host, and the base of the participants' image of the container
# service manager), slurm (the same plus munge and Slurm's daemons), ssh (the same plus an SSH
# server and a user `ubuntu` with passwordless sudo, as on an EC2 Ubuntu image; each container
# makes its own host keys when it starts, and its authorized key is put there by the test, as
# cloud-init would) and postgresql (the same plus Debian's PostgreSQL, installed with its main
# cluster but not started at boot, for the MLflow role's PostgreSQL backend: test hosts cannot
# reach an apt mirror to install it).
# An image is rebuilt only when its recipe changed (package list and setup, kept in an image label).
source "$(dirname "$0")/lib.sh"

BASE_PACKAGES=python3,python3-apt,python3-venv,systemd,systemd-sysv,dbus,sudo,iproute2,procps,ca-certificates,zip,unzip
declare -A IMAGES=([systemd]="$BASE_IMAGE" [slurm]="$SLURM_IMAGE" [ssh]="$SSH_IMAGE" [postgresql]="$POSTGRESQL_IMAGE")
declare -A EXTRAS=([systemd]="" [slurm]="munge slurm-wlm slurm-client" [ssh]="openssh-server" [postgresql]="postgresql")
# Run in the image after its extras are installed.
declare -A SETUP=([postgresql]='
systemctl disable postgresql.service
' [ssh]='
useradd --create-home --shell /bin/bash ubuntu
printf "ubuntu ALL=(ALL) NOPASSWD:ALL\n" > /etc/sudoers.d/90-ubuntu
chmod 0440 /etc/sudoers.d/90-ubuntu
printf "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n" > /etc/ssh/sshd_config.d/50-test-host.conf
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
printf "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" \
  > /etc/systemd/system/ssh.service.d/host-keys.conf
systemctl enable ssh.service
')

rootfs=""
work=$(mktemp -d "${TMPDIR:-/tmp}/nvflare-image.XXXXXX")
cleanup() {
  umount "$work"/flavour/proc "$work"/flavour/dev 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bootstrap_rootfs() {
  [ -n "$rootfs" ] && return 0
  command -v debootstrap >/dev/null || die "debootstrap not found: run 'make bootstrap'"
  rootfs="$work/rootfs"
  log "debootstrap of Debian 12 (about a minute)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$rootfs" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (see $CACHE/debootstrap.log)"; }
  : > "$rootfs/etc/machine-id"
  for unit in getty.target systemd-udevd.service systemd-udevd-control.socket \
              systemd-udevd-kernel.socket systemd-timesyncd.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
}

build() {
  local flavour=$1 image=${IMAGES[$1]} extras=${EXTRAS[$1]} setup=${SETUP[$1]:-} label have dir
  label="$BASE_PACKAGES${extras:+ + $extras}${setup:+ + setup $(printf '%s' "$setup" | sha256sum | cut -c1-12)}"
  have=$(docker image inspect -f '{{ index .Config.Labels "org.federated-nvflare.packages" }}' "$image" 2>/dev/null || true)
  [ "$have" = "$label" ] && return 0
  bootstrap_rootfs
  dir="$work/flavour"
  rm -rf "$dir"
  cp -a "$rootfs" "$dir"
  if [ -n "$extras" ]; then
    log "apt-get install $extras (image $image)"
    mount --bind /dev "$dir/dev"
    mount -t proc proc "$dir/proc"
    printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
    chmod +x "$dir/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    # shellcheck disable=SC2086
    chroot "$dir" env DEBIAN_FRONTEND=noninteractive bash -c \
      "apt-get update -qq && apt-get install -y -qq --no-install-recommends $extras" >"$CACHE/image-$flavour.log" 2>&1 \
      || { tail -20 "$CACHE/image-$flavour.log" >&2; die "apt-get in the $flavour image failed (see $CACHE/image-$flavour.log)"; }
    if [ -n "$setup" ]; then
      chroot "$dir" bash -euc "$setup" >>"$CACHE/image-$flavour.log" 2>&1 \
        || { tail -20 "$CACHE/image-$flavour.log" >&2; die "the setup of the $flavour image failed (see $CACHE/image-$flavour.log)"; }
    fi
    umount "$dir/proc" "$dir/dev"
    rm -f "$dir/usr/sbin/policy-rc.d"
    : > "$dir/etc/resolv.conf"
  fi
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import \
    --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' \
    --change "LABEL org.federated-nvflare.packages=\"$label\"" - "$image" >/dev/null
  rm -rf "$dir"
  log "built $image"
}

mkdir -p "$CACHE"
if [ $# -eq 0 ]; then
  set -- systemd slurm ssh postgresql
fi
for flavour in "$@"; do
  [ -n "${IMAGES[$flavour]:-}" ] || die "unknown image flavour '$flavour' (known: ${!IMAGES[*]})"
  build "$flavour"
done
