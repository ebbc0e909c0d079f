#!/usr/bin/env bash
# The README's main job: set up this machine, then deploy the lab stack with `pulumi up --stack lab`
# (the same program, roles and verification as production, on local systemd-nspawn hosts).
#   scripts/lab.sh up       set up + deploy (shows Pulumi's plan and progress, then a summary);
#                           `up --config-file FILE` deploys another copy of the lab's stack config
#   scripts/lab.sh down     `pulumi destroy --stack lab` (leaves nothing behind)
#   scripts/lab.sh summary  endpoints, versions, how to verify, how to destroy
#   scripts/lab.sh copy NAME INDEX   write stacks/Pulumi.NAME.yaml, a copy of the lab on its own
#                           bridge and subnet (10.<80+INDEX>.0.0/24), so a second lab runs beside
#                           the first on this machine; then VISIO_LAB_STACK=NAME scripts/lab.sh up
# VISIO_LAB_STACK (default lab) names the lab stack every subcommand and tests/lab work on.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[lab]\033[0m %s\n' "$*"; }
STACK=${VISIO_LAB_STACK:-lab}

case "${1:-up}" in
  up)
    shift || true
    extra=()
    case "${1:-}" in
      "") ;;
      --config-file) [ -n "${2:-}" ] || { echo "usage: scripts/lab.sh up [--config-file FILE]" >&2; exit 2; }
                     extra=(--config-file "$2") ;;
      *) echo "usage: scripts/lab.sh up [--config-file FILE]" >&2; exit 2 ;;
    esac
    bash scripts/setup.sh
    # shellcheck source=pulumi-env.sh
    source scripts/pulumi-env.sh
    pulumi stack select --create "$STACK" >/dev/null
    # An `up` cut off hard (a second Ctrl-C, a lost terminal) leaves its in-flight operations
    # pending in the state, and a non-interactive `up --refresh` keeps them forever. The lab's
    # providers adopt whatever a cut-off create left on this host, so clearing them is safe here.
    # (Not on a ministry stack: there, a pending create may be a real server; see the README.)
    pending=$(pulumi stack export --stack "$STACK" | python3 -c \
      'import json,sys; print(len((json.load(sys.stdin).get("deployment") or {}).get("pending_operations") or []))')
    if [ "$pending" != 0 ]; then
      say "an earlier pulumi up was interrupted and left $pending operation(s) pending: clearing them"
      pulumi refresh --stack "$STACK" --clear-pending-creates --yes --skip-preview --diff=false "${extra[@]}" >/dev/null
    fi
    # --refresh: machines stopped or removed behind Pulumi's back (host reboot, lab-clean.sh) are
    # noticed and recreated instead of failing the configuration step as unreachable.
    say "pulumi up --refresh --stack $STACK ${extra[*]}"
    pulumi up --refresh --stack "$STACK" --yes --diff=false "${extra[@]}"
    visio summary "$STACK"
    ;;
  down)
    source scripts/pulumi-env.sh
    if pulumi stack ls --json 2>/dev/null | grep -q "\"name\": \"$STACK\""; then
      say "pulumi destroy --stack $STACK"
      pulumi destroy --stack "$STACK" --yes
    fi
    ;;
  summary)
    source scripts/pulumi-env.sh
    visio summary "$STACK"
    ;;
  copy)
    name=${2:?usage: scripts/lab.sh copy NAME INDEX}; index=${3:?usage: scripts/lab.sh copy NAME INDEX}
    [[ "$name" =~ ^lab[a-z0-9]{1,4}$ ]] || { echo "lab.sh copy: NAME must be lab + 1-4 lower-case letters/digits" >&2; exit 2; }
    [[ "$index" =~ ^[1-9]$ ]] || { echo "lab.sh copy: INDEX must be 1-9 (subnet 10.<80+INDEX>.0.0/24)" >&2; exit 2; }
    python3 - "$name" "$index" <<'PY'
import re, sys
name, index = sys.argv[1], int(sys.argv[2])
text = open("stacks/Pulumi.lab.yaml", encoding="utf-8").read()
text = re.sub(r"^encryptionsalt:.*\n", "", text, flags=re.M)
text = text.replace("10.77.", f"10.{80 + index}.").replace("visio-lab0", f"visio-{name}0")
text = text.replace("slug: lab\n", f"slug: {name}\n").replace(".lab.visio.test", f".{name}.visio.test")
out = f"stacks/Pulumi.{name}.yaml"
open(out, "w", encoding="utf-8").write(text)
print(f"[lab] wrote {out}: run it with VISIO_LAB_STACK={name} scripts/lab.sh up")
PY
    ;;
  *) echo "usage: scripts/lab.sh [up|down|summary|copy NAME INDEX]" >&2; exit 2 ;;
esac
