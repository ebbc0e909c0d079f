#!/usr/bin/env bash
# Stage 1 of the cloud's root, run on the host by scripts/openstack-cloud.sh: debootstrap Debian 12,
# then install packages.txt in a NON-booted systemd-nspawn that shares the host's network (so apt
# reaches the host's own mirror; nothing starts: a policy-rc.d refuses every service start), then
# leave every OpenStack unit disabled until stage 2 has created its database.
#
#   base.sh TARGET MIRROR SOURCES_FILE CACHE_DIR
#
# TARGET is an empty scratch directory (the caller renames it into the cache once this succeeds).
# SOURCES_FILE is the deb822 apt sources the root gets (the host's Debian entries); CACHE_DIR keeps
# downloaded .deb files across builds, so a rebuild downloads nothing.
set -euo pipefail
TARGET=${1:?usage: base.sh TARGET MIRROR SOURCES_FILE CACHE_DIR}
MIRROR=${2:?mirror}
SOURCES=${3:?sources file}
CACHE=${4:?cache dir}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T0=$SECONDS
step() { echo "[base +$((SECONDS - T0))s] $*"; }

mkdir -p "$CACHE/debootstrap" "$CACHE/archives/partial"
step "debootstrap bookworm (minbase)"
debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" \
  --include=systemd,systemd-sysv,dbus,iproute2,ca-certificates,procps,less \
  bookworm "$TARGET" "$MIRROR"

step "apt configuration"
rm -f "$TARGET/etc/apt/sources.list"
install -m 0644 "$SOURCES" "$TARGET/etc/apt/sources.list.d/debian.sources"
cat > "$TARGET/etc/apt/apt.conf.d/90visio-openstack" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
EOF
printf '#!/bin/sh\nexit 101\n' > "$TARGET/usr/sbin/policy-rc.d"
chmod 0755 "$TARGET/usr/sbin/policy-rc.d"

# Not booted, host network, .deb cache kept outside the root. All debconf questions of the
# OpenStack packages ("configure the database/keystone/endpoint for me?") default to no.
nspawn() {
  systemd-nspawn --quiet --register=no --keep-unit --resolv-conf=copy-host --timezone=off \
    --bind="$CACHE/archives:/var/cache/apt/archives" -D "$TARGET" \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
mapfile -t PACKAGES < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/packages.txt")
step "apt-get install ${#PACKAGES[@]} packages"
nspawn apt-get -q update
nspawn apt-get -q install -y "${PACKAGES[@]}"
rm -f "$TARGET/usr/sbin/policy-rc.d"

step "units: OpenStack off until configured, daemons the cloud never needs masked"
# Enabled by stage 2 once their databases exist.
for unit in keystone glance-api placement-api nova-api nova-conductor nova-scheduler nova-compute \
  neutron-api neutron-rpc-server neutron-server neutron-linuxbridge-agent neutron-dhcp-agent \
  neutron-l3-agent cinder-api cinder-scheduler cinder-volume mariadb rabbitmq-server; do
  if [ -e "$TARGET/lib/systemd/system/$unit.service" ]; then nspawn systemctl disable "$unit" >/dev/null 2>&1; fi
done
# Metadata API, HA/IPv6 router helpers, iSCSI/LVM (no device-mapper in this kernel: the fake
# Cinder driver needs none), timers and consoles that only cost boot time in a container.
for unit in nova-api-metadata keepalived radvd haproxy tgt iscsid open-iscsi lvm2-monitor \
  lvm2-lvmpolld dm-event multipathd apt-daily.timer apt-daily-upgrade.timer man-db.timer \
  e2scrub_all.timer e2scrub_reap fstrim.timer logrotate.timer systemd-networkd-wait-online \
  getty@tty1 console-getty; do
  if [ -e "$TARGET/lib/systemd/system/$unit" ] || [ -e "$TARGET/lib/systemd/system/$unit.service" ]; then
    nspawn systemctl mask "$unit" >/dev/null 2>&1 || true
  fi
done
nspawn systemctl enable systemd-networkd
rm -rf "$TARGET/var/log/"*.log "$TARGET/var/log/apt/"*
step "done ($(du -sm "$TARGET" | cut -f1) MB)"
