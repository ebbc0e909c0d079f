#!/usr/bin/env bash
# Throwaway Debian 12 machines (systemd-nspawn) for converging the roles by hand, apart from the lab:
# bridge vrtest0, subnet 10.79.0.0/24, dirs under /var/lib/visio-rolestest. Needs root.
#   tests/roles/machines.sh up NAME=IP [NAME=IP...]   copy the base, boot the machines, wait for SSH
#   tests/roles/machines.sh down                      stop them, remove bridge, NAT and machine dirs
# The debootstrapped base (/var/lib/visio-rolestest/base) is kept between runs.
# Several users of one host: `flock -o /var/lock/visio-rolestest.lock tests/roles/machines.sh ...`
# (-o: without it the machines inherit the lock's descriptor and hold it until they stop).
set -euo pipefail

ROOT=/var/lib/visio-rolestest
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRIDGE=vrtest0
HOST_IP=10.79.0.1
SUBNET=10.79.0.0/24
KEY="$ROOT/id_ed25519"
NFT_TABLE=visio_rolestest

die() { echo "machines.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"

base() {
  [ -d "$ROOT/base" ] && return
  command -v debootstrap >/dev/null || die "apt-get install -y debootstrap systemd-container"
  # The mirror this host's apt uses, as for the lab (visio_infra/model/apt_sources.py).
  local mirror
  mirror=$(cd "$REPO" && "$REPO/.venv/bin/python" -c \
    'from visio_infra.model.apt_sources import host_mirrors; print(host_mirrors().package)') \
    || die "no Debian mirror in this host's apt sources"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,ca-certificates \
    bookworm "$ROOT/base.tmp" "$mirror"
  mv "$ROOT/base.tmp" "$ROOT/base"
}

network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$HOST_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  # LiveKit wants 5,000,000-byte UDP buffers; machines inherit these global values from the host.
  for k in rmem_max wmem_max; do
    [ "$(sysctl -n net.core.$k)" -ge 5000000 ] || sysctl -qw net.core.$k=8388608
  done
  nft list table ip "$NFT_TABLE" >/dev/null 2>&1 || nft -f - <<NFT
table ip $NFT_TABLE {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr $SUBNET ip daddr != $SUBNET masquerade
  }
}
NFT
}

machine() {
  local name=$1 ip=$2 dir="$ROOT/machines/$1"
  if [ ! -d "$dir" ]; then
    mkdir -p "$ROOT/machines"
    cp -a "$ROOT/base" "$dir.tmp"
    echo "$name" > "$dir.tmp/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" > "$dir.tmp/etc/hosts"
    mkdir -p "$dir.tmp/etc/systemd/network" "$dir.tmp/root/.ssh"
    cat > "$dir.tmp/etc/systemd/network/10-host0.network" <<NET
[Match]
Name=host0
[Network]
Address=$ip/24
Gateway=$HOST_IP
DNS=$(awk '/^nameserver/{print $2; exit}' /etc/resolv.conf)
NET
    ln -sf /lib/systemd/system/systemd-networkd.service \
      "$dir.tmp/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
    awk '/^nameserver/' /etc/resolv.conf > "$dir.tmp/etc/resolv.conf"
    cp "$KEY.pub" "$dir.tmp/root/.ssh/authorized_keys"
    chmod 700 "$dir.tmp/root/.ssh"; chmod 600 "$dir.tmp/root/.ssh/authorized_keys"
    rm -f "$dir.tmp"/etc/ssh/ssh_host_*
    chroot "$dir.tmp" ssh-keygen -A >/dev/null
    mv "$dir.tmp" "$dir"
  fi
  if [ ! -f "$ROOT/run/$name.pid" ] || ! kill -0 "$(cat "$ROOT/run/$name.pid")" 2>/dev/null; then
    mkdir -p "$ROOT/run"
    setsid nohup "$REPO/scripts/in-own-cgroup" "rolestest-$name" \
      systemd-nspawn --boot --register=no --keep-unit --network-bridge="$BRIDGE" \
      -D "$dir" --machine "$name" > "$ROOT/run/$name.log" 2>&1 < /dev/null &
    echo $! > "$ROOT/run/$name.pid"
  fi
}

wait_ssh() {
  local ip=$1
  for _ in $(seq 60); do
    ssh -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=2 "root@$ip" true 2>/dev/null && return 0
    sleep 1
  done
  die "no SSH on $ip after 60 s (see $ROOT/run/*.log)"
}

up() {
  base
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -f "$KEY"
  network
  local pairs=("$@")
  for pair in "${pairs[@]}"; do machine "${pair%%=*}" "${pair#*=}"; done
  for pair in "${pairs[@]}"; do wait_ssh "${pair#*=}"; echo "up: ${pair%%=*} ${pair#*=}"; done
}

down() {
  for pidfile in "$ROOT"/run/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true   # nspawn asks the machine's systemd to power off
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    # A machine killed before it powered off (LiveKit's long drain timeout) leaves its host-side veth.
    name=$(basename "$pidfile" .pid)
    ip link del "vb-$name" 2>/dev/null || true
    "$REPO/scripts/in-own-cgroup" --remove "rolestest-$name"
  done
  nft delete table ip "$NFT_TABLE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$ROOT/machines" "$ROOT/run"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) die "usage: $0 up NAME=IP... | down" ;;
esac
