#!/usr/bin/env bash
# The README's main job: set up this machine, then deploy the lab stack with `pulumi up --stack lab`
# (the same program, roles and verification as production, on local systemd-nspawn hosts).
#   scripts/lab.sh up       set up + deploy (shows Pulumi's plan and progress, then a summary);
#                           `up --config-file FILE` deploys another copy of the lab's stack config
#   scripts/lab.sh down     `pulumi destroy --stack lab` (leaves nothing behind)
#   scripts/lab.sh summary  endpoints, versions, how to verify, how to destroy
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[lab]\033[0m %s\n' "$*"; }

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
    pulumi stack select --create lab >/dev/null
    # An `up` cut off hard (a second Ctrl-C, a lost terminal) leaves its in-flight operations
    # pending in the state, and a non-interactive `up --refresh` keeps them forever. The lab's
    # providers adopt whatever a cut-off create left on this host, so clearing them is safe here.
    # (Not on a ministry stack: there, a pending create may be a real server; see the README.)
    pending=$(pulumi stack export --stack lab | python3 -c \
      'import json,sys; print(len((json.load(sys.stdin).get("deployment") or {}).get("pending_operations") or []))')
    if [ "$pending" != 0 ]; then
      say "an earlier pulumi up was interrupted and left $pending operation(s) pending: clearing them"
      pulumi refresh --stack lab --clear-pending-creates --yes --skip-preview --diff=false "${extra[@]}" >/dev/null
    fi
    # --refresh: machines stopped or removed behind Pulumi's back (host reboot, lab-clean.sh) are
    # noticed and recreated instead of failing the configuration step as unreachable.
    say "pulumi up --refresh --stack lab ${extra[*]}"
    pulumi up --refresh --stack lab --yes --diff=false "${extra[@]}"
    visio summary lab
    ;;
  down)
    source scripts/pulumi-env.sh
    if pulumi stack ls --json 2>/dev/null | grep -q '"name": "lab"'; then
      say "pulumi destroy --stack lab"
      pulumi destroy --stack lab --yes
    fi
    ;;
  summary)
    source scripts/pulumi-env.sh
    visio summary lab
    ;;
  *) echo "usage: scripts/lab.sh [up|down|summary]" >&2; exit 2 ;;
esac
