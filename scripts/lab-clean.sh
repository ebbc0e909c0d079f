#!/usr/bin/env bash
# Remove a stale Visio lab from this host, whatever state Pulumi thinks it is in: every machine
# process, the bridge and its veths, the nftables table, mounts, machine directories and keys;
# host sysctls the lab raised are put back. The cached base images stay unless --images is given.
#
#   scripts/lab-clean.sh [STACK]            clean one lab stack (default: lab)
#   scripts/lab-clean.sh --all [--images]   every lab stack on this host (and the image cache)
#   scripts/lab-clean.sh --old-images       only the cached base images but the newest (frees disk)
#
# Afterwards `pulumi up --refresh --stack STACK` rebuilds the lab (refresh notices what is gone).
set -euo pipefail

LAB_ROOT=${VISIO_LAB_ROOT:-/var/lib/visio-lab}
say() { printf '\033[1m[lab-clean]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[lab-clean] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

stacks=() images=0 old_images=0 all=0
for arg in "$@"; do
  case "$arg" in
    --images) images=1 ;;
    --old-images) old_images=1 ;;
    --all) all=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) stacks+=("$arg") ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (the lab's processes, bridge and nftables rules belong to root)"
if [ "$all" = 1 ]; then
  stacks=()
  for dir in "$LAB_ROOT"/*/; do
    name=$(basename "$dir"); [ "$name" = images ] || stacks+=("$name")
  done
  # Bridges tagged by the lab whose stack directory is already gone.
  while read -r alias; do stacks+=("${alias#visio-lab:}"); done < <(
    ip -j -d link show type bridge | python3 -c 'import json,sys; [print(l["ifalias"]) for l in json.load(sys.stdin) if l.get("ifalias","").startswith("visio-lab:")]')
elif [ ${#stacks[@]} = 0 ] && [ "$old_images" = 0 ]; then
  stacks=(lab)
fi

# PIDs of processes running on a tree under $1: chrooted there, containers whose "/" mount comes from
# there (even deleted, even orphaned by a killed systemd-nspawn), or systemd-nspawn started with -D there.
pids_under() {
  local base=$1 pid root
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$pid" = $$ ] && continue
    root=$(readlink "$proc/root" 2>/dev/null) || continue
    mroot=$(awk '$5 == "/" {print $4; exit}' "$proc/mountinfo" 2>/dev/null)
    if [[ "$root" == "$base"/* || "$mroot" == "$base"/* ]] || tr '\0' ' ' 2>/dev/null < "$proc/cmdline" | grep -q -- "-D $base/"; then
      echo "$pid"
    fi
  done
}

stop_pids() {
  local signal=$1 wait_s=$2; shift 2
  [ $# -gt 0 ] || return 0
  kill "-$signal" "$@" 2>/dev/null || true
  for _ in $(seq $((wait_s * 5))); do
    alive=0; for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.2
  done
  kill -KILL "$@" 2>/dev/null || true
}

for stack in "${stacks[@]}"; do
  dir="$LAB_ROOT/$stack"
  say "cleaning lab stack '$stack' ($dir)"
  # 1. machines: ask systemd-nspawn to power them off, then kill what is left on their trees.
  mapfile -t nspawn < <(for f in "$dir"/run/*.pid; do [ -f "$f" ] && cat "$f"; done; \
    pids_under "$dir/machines" | while read -r p; do
      [[ "$(tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline)" == systemd-nspawn* ]] && echo "$p"; done)
  live=(); for p in "${nspawn[@]}"; do
    [[ "$(tr '\0' ' ' 2>/dev/null < /proc/$p/cmdline)" == systemd-nspawn*"$dir/machines/"* ]] && live+=("$p"); done
  if [ ${#live[@]} -gt 0 ]; then say "stopping ${#live[@]} machine(s): ${live[*]}"; stop_pids TERM 30 "${live[@]}"; fi
  mapfile -t rest < <(pids_under "$dir/machines")
  if [ ${#rest[@]} -gt 0 ]; then say "killing ${#rest[@]} leftover process(es)"; stop_pids KILL 5 "${rest[@]}"; fi
  # 2. mounts below the stack directory (deepest first).
  awk -v base="$dir/" 'index($2, base) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    say "unmounting $m"; umount -l "$m" || true; done
  # 3. network: the bridge tagged for this stack (its veths go with the machines), its nftables table.
  while read -r br; do
    [ -n "$br" ] || continue
    say "removing bridge $br"; ip link del "$br"
  done < <(ip -j -d link show type bridge | python3 -c \
    "import json,sys; [print(l['ifname']) for l in json.load(sys.stdin) if l.get('ifalias') == 'visio-lab:$stack']")
  table="visio_lab_${stack//[^A-Za-z0-9_]/_}"
  if nft list table inet "$table" >/dev/null 2>&1; then say "removing nftables table inet $table"; nft delete table inet "$table"; fi
  # 4. host sysctls the lab raised, back to what they were (unless changed by someone since).
  if [ -f "$dir/run/sysctl.json" ]; then
    python3 - "$dir/run/sysctl.json" <<'PY'
import json, pathlib, sys
for key, values in json.loads(pathlib.Path(sys.argv[1]).read_text()).items():
    path = pathlib.Path("/proc/sys", *key.split("."))
    if path.read_text().strip() == values["set"]:
        path.write_text(values["before"] + "\n")
        print(f"[lab-clean] {key} restored to {values['before']}")
PY
  fi
  # 5. files: machine trees, PIDs, console logs, keys.
  if [ -d "$dir" ]; then say "removing $dir"; rm -rf --one-file-system "$dir"; fi
done

if [ "$images" = 1 ] && [ -d "$LAB_ROOT/images" ]; then
  awk -v base="$LAB_ROOT/images/" 'index($2, base) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
  say "removing cached base images in $LAB_ROOT/images"; rm -rf --one-file-system "$LAB_ROOT/images"
fi
if [ "$old_images" = 1 ] && [ "$images" = 0 ] && [ -d "$LAB_ROOT/images" ]; then
  # Newest first; the newest (the recipe in use, or the next up rebuilds it) is kept.
  mapfile -t old < <(ls -1dt "$LAB_ROOT"/images/*/ 2>/dev/null | tail -n +2)
  for image in "${old[@]}"; do
    awk -v base="$image" 'index($2, base) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l
    say "removing old base image $image"; rm -rf --one-file-system "$image"
  done
  [ ${#old[@]} -gt 0 ] || say "no old base image to remove (the newest one is kept)"
fi
rmdir "$LAB_ROOT" 2>/dev/null || true
if [ ${#stacks[@]} -gt 0 ]; then
  say "done; the Pulumi state may still list the removed resources: run \`pulumi up --refresh --stack ${stacks[0]}\` to rebuild"
else
  say "done"
fi
