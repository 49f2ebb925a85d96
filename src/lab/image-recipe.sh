#!/bin/sh
# Lab base image recipe (issue 4). The sha256 of this file names the image cache directory, so
# any change here rebuilds the image; nothing host- or VM-specific belongs in this file
# (hostnames, addresses, host keys and the lab login key are injected per VM by src/lab/vm.rs).
#
# Usage: sh image-recipe.sh ROOTFS_DIR MIRROR_URL
set -eu
ROOTFS="$1"
MIRROR="$2"
SUITE=bookworm
PACKAGES=openssh-server,kdump-tools,makedumpfile,kexec-tools,linux-image-amd64,systemd-sysv,\
iproute2,ifupdown,udev,kmod,procps,sudo,socat,file,less,netcat-openbsd,iputils-ping

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# Root filesystem on the first virtio disk; the whole disk is the filesystem (no partitions).
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' > "$ROOTFS/etc/fstab"

# Per-VM identity is injected later: no host keys, an empty machine-id (systemd fills it on first
# boot), no hostname.
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
: > "$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
: > "$ROOTFS/etc/hostname"

# Root logs in by key only (Debian's default PermitRootLogin prohibit-password); no password.
mkdir -p "$ROOTFS/root/.ssh"
chmod 0700 "$ROOTFS/root/.ssh"
# Fail fast instead of waiting for DNS on a network without a resolver.
printf 'UseDNS no\n' > "$ROOTFS/etc/ssh/sshd_config.d/lab.conf"

# Loopback; the VM's own interface is written per VM into /etc/network/interfaces.d/.
cat > "$ROOTFS/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
EOF

# Quiet serial getty is enough; no resolver on the lab network.
: > "$ROOTFS/etc/resolv.conf"

chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
