#!/usr/bin/env bash
# A real single-machine OpenStack Zed (Debian 12 packages) in a systemd-nspawn machine on this host,
# for the acceptance tests: Keystone, Glance (file store), Placement, Nova (4 fake compute hosts),
# Neutron (ML2 linuxbridge, DHCP + L3 agents, floating IPs on the external network `public`),
# Cinder (fake backend, `encrypted` and `plain` volume types, fixed-key key manager).
#
#   scripts/openstack-cloud.sh up            boot a clean cloud from the cached root (built first when
#                                            missing: ~10 min once) and wait until it is usable
#   scripts/openstack-cloud.sh down [--purge] remove the machine, its bridge, overlay and scratch copy
#                                            (--purge: the cached roots and .deb cache too)
#   scripts/openstack-cloud.sh status        running or not, address, clouds.yaml, services (exit 0:
#                                            running and ready, 1: running, not ready, 3: not running)
#   scripts/openstack-cloud.sh exec CMD...   run CMD inside the machine (as root; the `openstack` CLI
#                                            there defaults to the admin cloud), e.g. to inject faults:
#                                            exec systemctl stop nova-api
#   scripts/openstack-cloud.sh build         only make sure the cached root exists (leaves a running
#                                            cloud alone; builds on a machine of its own)
#
# Clients: OS_CLIENT_CONFIG_FILE=$VISIO_OPENSTACK_DIR/clouds.yaml with OS_CLOUD=visio-acceptance (a
# `member` of project visio-acceptance, default quotas) or visio-acceptance-admin.
# VISIO_OPENSTACK_DIR (default ~/.cache/visio-openstack) holds, outside the repository:
#   clouds.yaml              0600, the two clouds above (passwords generated randomly at build time)
#   roots/<digest>/root      the pristine built root: installed AND configured; <digest> covers this
#                            script and scripts/openstack-cloud/, so changing either rebuilds it
#   roots/<digest>/stamp.json  build_seconds (cold: install + configure), when, digests
#   base/<digest>/root       stage 1 (Debian + packages, unconfigured), reused while only the
#                            configuration changes; .debs/ keeps downloaded packages
#   run/                     the running cloud: pids, overlay (upper, work, merged root), console log
#   logs/                    build logs
# Every `up` boots a throw-away overlay of the pristine root, so every cloud starts clean.
# VISIO_OPENSTACK_BOOT_TIMEOUT (default 900 s): how long `up` waits for a usable cloud.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FILES=$HERE/openstack-cloud
# shellcheck source=openstack-cloud/cloud.env
. "$FILES/cloud.env"
D=${VISIO_OPENSTACK_DIR:-$HOME/.cache/visio-openstack}
RUN=$D/run
CLOUDS=$D/clouds.yaml
INSIDE=/usr/local/lib/visio-openstack   # where scripts/openstack-cloud/ lives inside the root
BOOT_TIMEOUT=${VISIO_OPENSTACK_BOOT_TIMEOUT:-900}
VETH=vb-$OSC_MACHINE                    # systemd-nspawn's host side of the machine's veth

say() { printf '\033[1m[openstack-cloud]\033[0m %s\n' "$*"; }
warn() { printf '\033[33m[openstack-cloud]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[openstack-cloud] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

preflight() {
  [ "$(id -u)" = 0 ] || die "run as root: the cloud is a systemd-nspawn machine on a host bridge"
  local missing=() tool
  for tool in debootstrap systemd-nspawn nsenter ip mount flock python3 setsid; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} = 0 ] || die "missing on this host: ${missing[*]} (scripts/setup.sh installs debootstrap and systemd-container)"
  grep -qw overlay /proc/filesystems || die "the kernel has no overlayfs: every up boots an overlay of the cached root"
}

need_disk() { # MB, what: fail before starting when $D's file system has less free
  mkdir -p "$D"
  local free; free=$(df -Pm "$D" | awk 'NR == 2 {print $4}')
  [ "$free" -ge "$1" ] || die "$2 needs ${1} MB free in $D, only $free MB are: free some ('$0 down --purge' drops this cache) or set VISIO_OPENSTACK_DIR"
}

lock() { # one up/down/build at a time (exec and status need none)
  mkdir -p "$D"
  exec 9>"$D/.lock"
  flock -n 9 || die "another scripts/openstack-cloud.sh up/down/build is running (lock $D/.lock)"
}

# ---------------------------------------------------------------------------------------------
# Cache keys

# The host's own Debian apt sources (deb822), bookworm suites only: the root uses the same mirror
# as the host, whichever it is. Prints the sources; `host_sources mirror` prints the main URI.
host_sources() {
  python3 - "${1:-sources}" <<'PY'
import glob, sys
entries = []
def add(uris, suites, comps):
    suites = [s for s in suites if s.split("-")[0] == "bookworm"]
    if uris and suites:
        entries.append((uris, suites, [c for c in comps if c == "main"] or ["main"]))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path, encoding="utf-8").read().split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower(); fields[key] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            add(fields.get("uris", "").split(), fields.get("suites", "").split(), fields.get("components", "").split())
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb":
            add([words[1]], [words[2]], words[3:])
if not entries:
    sys.exit("no bookworm entry in the host's apt sources (/etc/apt/sources.list{,.d/})")
if sys.argv[1] == "mirror":
    main = [e for e in entries if "bookworm" in e[1]] or entries
    print(main[0][0][0])
else:
    print("\n\n".join(
        f"Types: deb\nURIs: {' '.join(u)}\nSuites: {' '.join(s)}\nComponents: {' '.join(c)}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" for u, s, c in entries))
PY
}

sha() { sha256sum | cut -c1-16; }
# Stage 1 depends on the package list, its builder and the apt sources only; the configured root on
# every file of scripts/openstack-cloud/ and this script (plus the sources).
base_digest() { { cat "$FILES/base.sh" "$FILES/packages.txt"; host_sources; } | sha; }
root_digest() {
  {
    (cd "$HERE" && find openstack-cloud openstack-cloud.sh -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
      -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    host_sources
  } | sha
}

# ---------------------------------------------------------------------------------------------
# Processes, interfaces, mounts

pid_alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ]; }
cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true; }
# Our systemd-nspawn processes: the booted machine (by name) or a build's non-booted one (by -D
# under $D), whatever the pid files say (a crashed run may have lost them).
our_nspawns() {
  local proc pid args
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    args=$(cmdline "$pid")
    case "$args" in
      systemd-nspawn\ *--machine="$OSC_MACHINE"\ *|systemd-nspawn\ *-D\ "$D"/*) echo "$pid" ;;
    esac
  done
}
# The machine's PID 1 (its systemd): the child of systemd-nspawn that is PID 1 in its namespace.
leader_of() {
  local child
  for child in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
    if awk '$1 == "NSpid:" && $NF == 1 {found=1} END {exit !found}' "/proc/$child/status" 2>/dev/null; then
      echo "$child"; return 0
    fi
  done
  return 1
}
running_leader() { # prints the running machine's PID 1, or fails
  local n l
  n=$(cat "$RUN/nspawn.pid" 2>/dev/null) || return 1
  pid_alive "$n" && [[ "$(cmdline "$n")" == systemd-nspawn\ *--machine="$OSC_MACHINE"\ * ]] || return 1
  l=$(leader_of "$n") || return 1
  echo "$l"
}
inside() { # run a command in the machine's namespaces, with a clean environment
  local l=$1; shift
  nsenter -t "$l" -a -r -w env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" OS_CLOUD=visio-acceptance-admin "$@"
}
kill_and_wait() { # pids...: SIGKILL, then wait (10 s at most) until they are gone
  [ $# -gt 0 ] || return 0
  kill -KILL "$@" 2>/dev/null || true
  local i p left
  for i in $(seq 50); do
    left=0; for p in "$@"; do pid_alive "$p" && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.2
  done
  warn "processes still alive after SIGKILL: $*"
}
# Remove every process, mount, interface and scratch file of a cloud or an interrupted build.
# The pristine cached roots stay. Safe when there is nothing to remove.
cleanup() {
  local n l p members=()
  for n in $(our_nspawns); do
    if l=$(leader_of "$n"); then
      # Everything in the machine's mount namespace (services, `exec` commands), then its PID 1:
      # killing the PID 1 of a PID namespace kills all of it; the overlay is thrown away anyway.
      for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$(readlink "/proc/$l/ns/mnt")" ] && members+=("${p#/proc/}")
      done
      kill -KILL "$l" 2>/dev/null || true
    fi
    members+=("$n")
  done
  kill_and_wait "${members[@]}"
  # Anything else still running on our trees: a machine orphaned by a killed systemd-nspawn (its
  # "/" is our overlay or a build root), a chroot.
  members=()
  local self_ns; self_ns=$(readlink /proc/self/ns/mnt)
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" != "$self_ns" ] || [[ "$(readlink "$p/root" 2>/dev/null)" == "$D"/* ]] || continue
    if [[ "$(readlink "$p/root" 2>/dev/null)" == "$D"/* ]] || \
       awk -v d="$D/" '$5 == "/" && (index($4, d) == 1 || index($0, "upperdir=" d) > 0) {found=1} END {exit !found}' \
         "$p/mountinfo" 2>/dev/null; then
      members+=("${p#/proc/}")
    fi
  done
  kill_and_wait "${members[@]}"
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || warn "cannot unmount $m"; done < <(
    awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
  ip link show "$VETH" >/dev/null 2>&1 && ip link del "$VETH"
  ip link show "$OSC_BRIDGE" >/dev/null 2>&1 && ip link del "$OSC_BRIDGE"
  rm -rf "$RUN"
}

bridge_up() {
  local other
  other=$(ip -o -4 addr show | awk -v b="$OSC_BRIDGE" -v net="${OSC_HOST_IP%.*}." '$2 != b && index($4, net) == 1 {print $2}')
  [ -z "$other" ] || die "address range ${OSC_HOST_IP%.*}.0/$OSC_PREFIX is already used on $other: remove it or change scripts/openstack-cloud/cloud.env"
  ip link add "$OSC_BRIDGE" type bridge
  ip link set "$OSC_BRIDGE" alias "visio-openstack:$D"
  ip addr add "$OSC_HOST_IP/$OSC_PREFIX" dev "$OSC_BRIDGE"
  ip link set "$OSC_BRIDGE" up
}

# Boot ROOT as machine NAME with NETWORK (a systemd-nspawn option), in its own session (it outlives
# this script); pid files and console log go to DIR. Prints the machine's PID 1 once systemd answers.
boot() {
  local root=$1 dir=$2 name=$3 network=$4 n l i
  mkdir -p "$dir"
  setsid systemd-nspawn --quiet --boot --register=no --keep-unit --machine="$name" "$network" \
    --resolv-conf=off --timezone=off --link-journal=no --console=read-only -D "$root" \
    </dev/null >"$dir/console.log" 2>&1 9>&- &
  n=$!
  echo "$n" >"$dir/nspawn.pid"
  for i in $(seq 100); do
    l=$(leader_of "$n") && break
    pid_alive "$n" || die "systemd-nspawn exited at once: $(tail -3 "$dir/console.log" | tr '\n' ' ')"
    sleep 0.1
  done
  [ -n "${l:-}" ] || die "systemd-nspawn started no machine: $(tail -3 "$dir/console.log" | tr '\n' ' ')"
  echo "$l" >"$dir/leader.pid"
  for i in $(seq 600); do
    inside "$l" test -S /run/systemd/private 2>/dev/null && break
    sleep 0.1
  done
  echo "$l"
}

# Kill a machine by its systemd-nspawn PID (its PID namespace dies with its PID 1), or by the pid
# file in DIR.
kill_nspawn() {
  local l
  pid_alive "$1" && [[ "$(cmdline "$1")" == systemd-nspawn\ * ]] || return 0
  l=$(leader_of "$1") && kill -KILL "$l" 2>/dev/null
  kill_and_wait "$1"
}
stop_machine() { kill_nspawn "$(cat "$1/nspawn.pid" 2>/dev/null || true)"; }

# Roots of older scripts are never used again (2 GB each), unless a running cloud still boots on one.
prune_roots() {
  local keep=$1 dir
  for dir in "$D"/roots/*/; do
    dir=${dir%/}
    [ -d "$dir" ] && [ "$(basename "$dir")" != "$keep" ] || continue
    grep -q "lowerdir=$dir/root" /proc/mounts && continue
    rm -rf "$dir"
  done
}

# ---------------------------------------------------------------------------------------------
# Build: stage 1 (Debian + packages) then stage 2 (booted once, configured, sealed, powered off)

build_base() { # prints the stage-1 root
  local digest dir tmp t0
  digest=$(base_digest)
  dir=$D/base/$digest
  if [ -f "$dir/stamp.json" ]; then echo "$dir"; return; fi
  t0=$SECONDS
  tmp=$D/tmp/base-$digest
  rm -rf "$tmp"; mkdir -p "$tmp" "$D/logs"
  host_sources >"$tmp/debian.sources"
  say "stage 1: Debian 12 + OpenStack Zed packages into $tmp (log $D/logs/base.log)" >&2
  bash "$FILES/base.sh" "$tmp/root" "$(host_sources mirror)" "$tmp/debian.sources" "$D/.debs" \
    >"$D/logs/base.log" 2>&1 || die "stage 1 failed; last lines of $D/logs/base.log: $(tail -5 "$D/logs/base.log")"
  printf '{"digest": "%s", "install_seconds": %d, "built_at": "%s"}\n' \
    "$digest" $((SECONDS - t0)) "$(date -u +%FT%TZ)" >"$tmp/stamp.json"
  mkdir -p "$D/base"
  rm -rf "$dir"; mv "$tmp" "$dir"
  # Older stage-1 roots are never used again.
  find "$D/base" -mindepth 1 -maxdepth 1 -type d ! -name "$digest" -exec rm -rf {} +
  echo "$dir"
}

build_root() { # builds $D/roots/$1 (the configured root)
  local digest=$1 base tmp t1 l install configure i
  base=$(build_base)
  install=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["install_seconds"])' "$base/stamp.json")
  t1=$SECONDS
  tmp=$D/tmp/root-$digest
  rm -rf "$tmp"; mkdir -p "$tmp"
  say "stage 2: configuring OpenStack in $tmp (log $D/logs/configure.log)"
  cp -a --reflink=auto "$base/root" "$tmp/root"
  local r=$tmp/root
  echo "$OSC_MACHINE" >"$r/etc/hostname"
  printf '127.0.0.1 localhost\n%s %s\n' "$OSC_IP" "$OSC_MACHINE" >"$r/etc/hosts"
  rm -f "$r/etc/resolv.conf"; : >"$r/etc/resolv.conf"   # no DNS: everything is addressed by IP
  # Without carrier too: the build boots on a veth whose host side stays down.
  printf '[Match]\nName=host0\n[Network]\nAddress=%s/%s\nConfigureWithoutCarrier=yes\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    "$OSC_IP" "$OSC_PREFIX" >"$r/etc/systemd/network/10-host0.network"
  # The bridge of the flat physical network `external` (network `public`, floating IPs).
  printf '[NetDev]\nName=brex\nKind=bridge\n' >"$r/etc/systemd/network/20-brex.netdev"
  printf '[Match]\nName=brex\n[Network]\nConfigureWithoutCarrier=yes\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    >"$r/etc/systemd/network/20-brex.network"
  rm -rf "$r$INSIDE"; mkdir -p "$r$INSIDE"
  cp -a "$FILES/." "$r$INSIDE/"
  # Booted on a veth of its own, unconnected on the host side: the build needs no network from the
  # host, so it never clashes with a running cloud's bridge and address (build while a cloud runs).
  l=$(boot "$r" "$tmp" "$OSC_MACHINE-build" --network-veth)
  if ! inside "$l" bash "$INSIDE/setup.sh" >"$D/logs/configure.log" 2>&1; then
    stop_machine "$tmp"
    die "stage 2 failed (its root stays in $tmp until the next build); last lines of $D/logs/configure.log:
$(tail -15 "$D/logs/configure.log")"
  fi
  # A clean power-off (MariaDB and RabbitMQ flush to disk): the root is then the pristine root.
  kill -TERM "$(cat "$tmp/nspawn.pid")"
  for i in $(seq 600); do pid_alive "$(cat "$tmp/nspawn.pid")" || break; sleep 0.2; done
  pid_alive "$(cat "$tmp/nspawn.pid")" && { stop_machine "$tmp"; die "the machine did not power off within 120 s"; }
  rm -f "$tmp/nspawn.pid" "$tmp/leader.pid"
  [ -s "$r/etc/openstack/clouds.yaml" ] || die "stage 2 wrote no clouds.yaml"
  configure=$((SECONDS - t1))
  printf '{"digest": "%s", "build_seconds": %d, "install_seconds": %d, "configure_seconds": %d, "built_at": "%s"}\n' \
    "$digest" $((install + configure)) "$install" "$configure" "$(date -u +%FT%TZ)" >"$tmp/stamp.json"
  mkdir -p "$D/roots"
  rm -rf "$D/roots/$digest"; mv "$tmp" "$D/roots/$digest"
  prune_roots "$digest"
  rm -rf "$D/tmp"
}

ensure_root() { # sets ROOT_DIR to the pristine root of the current scripts (building it if missing)
  local digest t0              # and BUILT_IN to the seconds spent building it (empty when cached)
  digest=$(root_digest)
  ROOT_DIR=$D/roots/$digest BUILT_IN=
  [ -f "$ROOT_DIR/stamp.json" ] && return 0
  t0=$SECONDS
  need_disk 6000 "building the cloud's root (2 GB of packages, a 2 GB configured copy)"
  say "no cached root for these scripts (digest $digest): building it once"
  trap 'warn "build interrupted: removing its machine"; stop_machine "$D/tmp/root-$digest"; exit 130' INT TERM
  build_root "$digest"
  trap - INT TERM
  BUILT_IN=$((SECONDS - t0))
  say "built root in $BUILT_IN s (cached in $ROOT_DIR)"
}

# ---------------------------------------------------------------------------------------------
# Commands

host_check() { # the APIs answer from the host, on the bridge
  python3 - "$OSC_IP" <<'PY'
import sys, urllib.request
ip = sys.argv[1]
for port, path in ((5000, "/v3"), (9292, "/"), (8774, "/"), (8778, "/"), (9696, "/"), (8776, "/")):
    try:
        urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=10).close()
    except urllib.error.HTTPError as exc:  # 300 Multiple Choices is a version document too
        if exc.code >= 400:
            sys.exit(f"http://{ip}:{port}{path} answers {exc.code} from the host")
    except OSError as exc:
        sys.exit(f"http://{ip}:{port}{path} unreachable from the host: {exc}")
PY
}

cmd_up() {
  preflight; lock
  local t0=$SECONDS l root
  if l=$(running_leader); then
    say "the cloud is already running at $OSC_IP (use 'down' first for a clean one)"
    grep -q "lowerdir=$D/roots/$(root_digest)/root" /proc/mounts || \
      warn "it runs on a root built from other scripts than these: 'down' then 'up' to use these"
    inside "$l" python3 "$INSIDE/ready.py" --wait --timeout "$BOOT_TIMEOUT" || die "the running cloud is not ready"
    say "clouds.yaml: $CLOUDS"
    return 0
  fi
  cleanup   # leftovers of a crashed run: stale pids, machine, mounts, interfaces, scratch
  ensure_root
  root=$ROOT_DIR
  need_disk 1000 "a running cloud (its overlay grows with logs and databases)"
  local t1=$SECONDS
  mkdir -p "$RUN/upper" "$RUN/work" "$RUN/root"
  mount -t overlay visio-openstack -o "lowerdir=$root/root,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/root"
  bridge_up
  l=$(boot "$RUN/root" "$RUN" "$OSC_MACHINE" --network-bridge="$OSC_BRIDGE")
  (umask 077; cp "$root/root/etc/openstack/clouds.yaml" "$CLOUDS.tmp" && mv "$CLOUDS.tmp" "$CLOUDS")
  if ! inside "$l" python3 "$INSIDE/ready.py" --wait --timeout "$BOOT_TIMEOUT"; then
    die "the cloud is not usable after ${BOOT_TIMEOUT}s; logs: $0 exec journalctl -b, /var/log/{nova,neutron,cinder}/ inside; console $RUN/console.log"
  fi
  host_check || die "the cloud answers inside the machine but not from the host"
  if [ -n "$BUILT_IN" ]; then
    say "cloud up in $((SECONDS - t0)) s (built root in $BUILT_IN s; boot $((SECONDS - t1)) s)"
  else
    say "cloud up in $((SECONDS - t0)) s (cached root)"
  fi
  say "clouds: OS_CLIENT_CONFIG_FILE=$CLOUDS OS_CLOUD=$OSC_PROJECT (or $OSC_PROJECT-admin); auth_url http://$OSC_IP:5000/v3"
}

cmd_build() { # a running cloud is left alone: the build boots a machine of its own
  preflight; lock
  local n
  for n in $(our_nspawns); do  # an interrupted build's machine
    [[ "$(cmdline "$n")" == *-D\ "$D/tmp/"* ]] && kill_nspawn "$n"
  done
  ensure_root
  [ -n "$BUILT_IN" ] || say "cached root is up to date: $ROOT_DIR"
}

cmd_down() {
  local purge=0
  case "${1:-}" in "") ;; --purge) purge=1 ;; *) die "usage: $0 down [--purge]" ;; esac
  preflight; lock
  local t0=$SECONDS was=stopped
  running_leader >/dev/null && was=running
  cleanup
  rm -f "$CLOUDS"
  [ -d "$D/roots" ] && prune_roots "$(root_digest)"
  if [ "$purge" = 1 ]; then
    rm -rf "$D/roots" "$D/base" "$D/tmp" "$D/.debs" "$D/logs"
    say "down in $((SECONDS - t0)) s (was $was); cache purged from $D"
  else
    say "down in $((SECONDS - t0)) s (was $was); cached root kept in $D/roots"
  fi
}

cmd_status() {
  local l digest
  digest=$(root_digest 2>/dev/null || echo "?")
  if [ -f "$D/roots/$digest/stamp.json" ]; then
    echo "cached root: $D/roots/$digest ($(cat "$D/roots/$digest/stamp.json"))"
  else
    echo "cached root: none for these scripts (digest $digest): 'up' builds it"
  fi
  if [ "$(id -u)" = 0 ] && l=$(running_leader); then
    echo "cloud: running (machine $OSC_MACHINE, PID 1 = $l) at $OSC_IP; auth_url http://$OSC_IP:5000/v3"
    echo "clouds.yaml: $CLOUDS (OS_CLOUD=$OSC_PROJECT or $OSC_PROJECT-admin)"
    inside "$l" python3 "$INSIDE/ready.py" --summary || return 1
  else
    echo "cloud: not running"
    echo "clouds.yaml: $CLOUDS (written by 'up')"
    return 3
  fi
}

cmd_exec() {
  [ $# -gt 0 ] || die "usage: $0 exec CMD [ARGS...]"
  [ "$(id -u)" = 0 ] || die "run as root"
  local l
  l=$(running_leader) || die "the cloud is not running ('$0 up')"
  inside "$l" "$@"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  build) shift; cmd_build "$@" ;;
  *) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 2 ;;
esac
