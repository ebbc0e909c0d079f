#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint and type checks, unit tests (Pulumi mocks,
# sizing properties, rendering), then the real things: the lab (lab up, verification, lab lifecycle
# tests, destroy) and a real OpenStack (cloud up, the acceptance stack applied, grown, faulted and
# destroyed through the real provider plugin, cloud down). Lint/unit then the OpenStack phase run
# while the lab phase runs, since they are independent (different machines, bridges and stacks).
#
#   scripts/test.sh            everything
#   scripts/test.sh lint       ruff, mypy, yamllint, ansible-lint
#   scripts/test.sh unit       unit tests only
#   scripts/test.sh checks     lint then unit tests
#   scripts/test.sh lab        lab up + verification + lab tests + destroy
#   scripts/test.sh openstack  cloud up + acceptance tests + cloud down
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[test]\033[0m %s\n' "$*"; }
phase=${1:-all}
mkdir -p reports
# Every step's wall time goes to reports/phases.tsv (step, seconds, status); `all` prints the table
# at the end and `make bench` shows the last run's.
PHASES=$ROOT/reports/phases.tsv
since() { python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$1"; }
timed() {
  local name=$1 t0 status=0; shift
  t0=$(date +%s.%N)
  "$@" || status=$?
  printf '%s\t%s\t%s\n' "$name" "$(since "$t0")" "$status" >> "$PHASES"
  return "$status"
}

# Set up once; the phases run below as child processes reuse it.
if [ "${VISIO_SETUP_DONE:-}" != 1 ]; then
  : > "$PHASES"
  timed "set-up (scripts/setup.sh)" bash scripts/setup.sh
fi
export VISIO_SETUP_DONE=1
# shellcheck source=pulumi-env.sh
source scripts/pulumi-env.sh

lint() {
  say "lint: ruff, mypy, yamllint, ansible-lint"
  timed "lint: ruff" ruff check visio_infra tests policy __main__.py
  timed "lint: mypy" mypy
  timed "lint: yamllint" yamllint -s .
  timed "lint: ansible-lint" ansible-lint -q roles playbooks
}

unit() {
  say "unit tests"
  timed "unit tests" python -m pytest tests/unit tests/roles -q -n 2 -p no:cacheprovider --junitxml=reports/unit.xml
}

lab() {
  # CI starts from a clean slate: a lab left by an interrupted earlier run is removed first.
  timed "lab: clean slate (lab-clean.sh --all)" bash scripts/lab-clean.sh --all
  say "lab: deploy"
  trap 'say "lab: destroy"; bash scripts/lab.sh down' EXIT
  timed "lab: up from nothing (scripts/lab.sh up)" bash scripts/lab.sh up
  say "lab: verification suite"
  verify_status=0
  timed "lab: visio verify lab --hardening" visio verify lab --hardening --junit reports/verify.xml \
    || verify_status=$?
  [ -z "${VISIO_LAB_VERIFIED:-}" ] || touch "$VISIO_LAB_VERIFIED"
  [ "$verify_status" = 0 ] || exit "$verify_status"
  say "lab: no-op up, refresh/recreate, break-and-detect, rolling upgrade, lab machines"
  timed "lab: tests/lab (without the fault drills)" \
    python -m pytest tests/lab -m "not drill" -q -p no:cacheprovider --junitxml=reports/lab.xml
  # The fault drills measure recovery times in seconds: they run once the phases started alongside
  # (the OpenStack cloud and its tests) are over, so those do not take the cores the drills measure.
  if [ -n "${VISIO_SIDE_STATUS:-}" ]; then
    waited=$(date +%s)
    until [ -e "$VISIO_SIDE_STATUS" ]; do sleep 5; done
    say "lab: the phases alongside ended ($(( $(date +%s) - waited )) s waited for them)"
  fi
  say "lab: fault drills (DB, Redis, SFU, TURN)"
  timed "lab: fault drills" \
    python -m pytest tests/lab -m drill -q -p no:cacheprovider --junitxml=reports/lab-drills.xml
  trap - EXIT
  say "lab: destroy"
  timed "lab: destroy" bash scripts/lab.sh down
  say "lab: nothing left behind"
  timed "lab: after-destroy checks" \
    python -m pytest tests/lab --after-destroy -q -p no:cacheprovider --junitxml=reports/lab-teardown.xml
}

openstack() {
  say "openstack: cloud up"
  trap 'say "openstack: cloud down"; bash scripts/openstack-cloud.sh down' EXIT
  if ! timed "openstack: cloud up" bash -o pipefail -c 'bash scripts/openstack-cloud.sh up 2>&1 | tee reports/openstack-up.log'; then
    # Keep what the machine's journal says before `down` removes it (a cold machine's first boot
    # once never got a Keystone token in 900 s while the same root booted in 77 s later).
    say "openstack: the cloud did not come up; its journal is in reports/openstack-boot.log"
    timeout 120 bash scripts/openstack-cloud.sh exec bash -c \
      'systemctl --failed --no-pager; uptime; free -m; journalctl -b --no-pager -n 400' \
      > reports/openstack-boot.log 2>&1 || true
    # A few lines for the end of the run's output (CI keeps only its tail): what the readiness check
    # was still waiting for, which units failed or never finished starting, the machine's load.
    { grep -E '^\[ready \+|^not ready after' reports/openstack-up.log | tail -2 | cut -c1-300
      timeout 60 bash scripts/openstack-cloud.sh exec bash -c \
        'echo "units failed or still starting: $(systemctl list-units --state=failed,activating --no-legend --plain | cut -d" " -f1 | tr "\n" " ")"
         echo "mariadb $(systemctl is-active mariadb), rabbitmq $(systemctl is-active rabbitmq-server), keystone $(systemctl is-active keystone); load $(cut -d" " -f1-3 /proc/loadavg)"
         echo "keystone log: $(grep -v "^\[pid" /var/log/keystone/keystone.log | tail -1 | cut -c1-200)"' \
        2>&1 || echo "the machine did not answer"
    } > reports/openstack-failure.txt
    exit 1
  fi
  say "openstack: acceptance stack, preflight (tests/openstack)"
  timed "openstack: tests/openstack" \
    python -m pytest tests/openstack -q -p no:cacheprovider --junitxml=reports/openstack.xml
  trap - EXIT
  say "openstack: cloud down"
  timed "openstack: cloud down" bash scripts/openstack-cloud.sh down
}

case "$phase" in
  lint) lint ;;
  unit) unit ;;
  checks) lint; unit ;;
  lab) lab ;;
  openstack) openstack ;;
  all)
    # Lint, unit tests and the OpenStack phase are independent of the lab: run them one after the
    # other while the lab phase runs (their output is shown when they finish).
    # Each phase is its own process so `set -e` stays in force inside it.
    # The OpenStack cloud boots once the lab is up and verified: twice in CI, its first boot during
    # the lab's creation (11 machine roots copied, then the converge) never became ready in 900 s,
    # when the same cached root is ready in 60-210 s otherwise (reports/openstack-failure.txt says
    # why); and booting during `verify --hardening` (Lynis on every node, verify's parallel SSH
    # sessions) once kept a node's sshd from answering within 10 s.
    rm -f reports/checks.status reports/openstack.status reports/openstack-failure.txt reports/*.xml
    export VISIO_LAB_VERIFIED=$ROOT/reports/lab-verified.ended
    rm -f "$VISIO_LAB_VERIFIED"
    started=$(date +%s.%N)
    { status=0; bash scripts/test.sh checks > reports/lint-unit.log 2>&1 || status=$?
      echo "$status" > reports/checks.status
      waited=$(date +%s)
      until [ -e "$VISIO_LAB_VERIFIED" ]; do sleep 5; done
      echo "[test] openstack: started after the lab's verification ($(( $(date +%s) - waited )) s waited)" \
        > reports/openstack.log
      status=0; bash scripts/test.sh openstack >> reports/openstack.log 2>&1 || status=$?
      echo "$status" > reports/openstack.status
    } &
    side=$!
    lab_status=0
    VISIO_SIDE_STATUS=reports/openstack.status bash scripts/test.sh lab || lab_status=$?
    touch "$VISIO_LAB_VERIFIED"   # the lab phase ended before its verification: the side job goes on
    wait "$side" || true
    say "lint and unit tests (run alongside the lab):"
    cat reports/lint-unit.log
    say "OpenStack phase (run alongside the lab):"
    cat reports/openstack.log
    printf '%s\t%s\t%s\n' "all phases, wall clock (lab alongside lint/unit/OpenStack)" \
      "$(since "$started")" - >> "$PHASES"
    say "time per step (reports/phases.tsv):"
    awk -F'\t' '{ printf "  %-58s %8s s  %s\n", $1, $2, ($3 == "0" ? "ok" : ($3 == "-" ? "" : "FAILED")) }' "$PHASES"
    if [ -s reports/openstack-failure.txt ] || grep -qs '<failure\|<error' reports/*.xml; then
      say "what failed:"
      python3 scripts/failure_summary.py reports
    fi
    checks_status=$(cat reports/checks.status 2>/dev/null || echo 1)
    openstack_status=$(cat reports/openstack.status 2>/dev/null || echo 1)
    [ "$checks_status" = 0 ] || { say "lint/unit FAILED"; exit "$checks_status"; }
    [ "$openstack_status" = 0 ] || { say "OpenStack phase FAILED"; exit "$openstack_status"; }
    [ "$lab_status" = 0 ] || { say "lab phase FAILED"; exit "$lab_status"; }
    ;;
  *) echo "usage: scripts/test.sh [all|lint|unit|checks|lab|openstack]" >&2; exit 2 ;;
esac
say "all requested phases passed"
