#!/usr/bin/env bash
# The README's main job: set up this machine, then deploy the lab stack with `pulumi up --stack lab`
# (the same program, roles and verification as production, on local systemd-nspawn hosts).
#   scripts/lab.sh up       set up + deploy (shows Pulumi's plan and progress, then a summary)
#   scripts/lab.sh down     `pulumi destroy --stack lab` (leaves nothing behind)
#   scripts/lab.sh summary  endpoints, versions, how to verify, how to destroy
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[lab]\033[0m %s\n' "$*"; }

case "${1:-up}" in
  up)
    bash scripts/setup.sh
    # shellcheck source=pulumi-env.sh
    source scripts/pulumi-env.sh
    pulumi stack select --create lab >/dev/null
    # --refresh: machines stopped or removed behind Pulumi's back (host reboot, lab-clean.sh) are
    # noticed and recreated instead of failing the configuration step as unreachable.
    say "pulumi up --refresh --stack lab"
    pulumi up --refresh --stack lab --yes --diff=false
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
