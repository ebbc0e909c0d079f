#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint and type checks, unit tests (Pulumi mocks,
# sizing properties, rendering), then the real thing: lab up, verification, lab lifecycle tests,
# destroy. Lint/unit run while the lab is being built, since they are independent.
#
#   scripts/test.sh          everything
#   scripts/test.sh lint     ruff, mypy, yamllint, ansible-lint
#   scripts/test.sh unit     unit tests only (Python, and the Go language host)
#   scripts/test.sh checks   lint then unit tests
#   scripts/test.sh lab      lab up + verification + lab tests + destroy
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[test]\033[0m %s\n' "$*"; }
phase=${1:-all}
mkdir -p reports

# Set up once; the phases run below as child processes reuse it.
[ "${VISIO_SETUP_DONE:-}" = 1 ] || bash scripts/setup.sh
export VISIO_SETUP_DONE=1
# shellcheck source=pulumi-env.sh
source scripts/pulumi-env.sh

lint() {
  say "lint: ruff, mypy, yamllint, ansible-lint"
  ruff check visio_infra tests policy __main__.py
  mypy
  yamllint -s .
  ansible-lint -q roles playbooks
}

unit() {
  say "unit tests"
  python -m pytest tests/unit tests/roles -q -n 2 -p no:cacheprovider --junitxml=reports/unit.xml
  say "unit tests: the project's Pulumi language host (Go: vet, tests)"
  (cd toolchain/pulumi-language-python \
    && export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local \
    && go vet ./... && go test ./...)
}

lab() {
  # CI starts from a clean slate: a lab left by an interrupted earlier run is removed first.
  bash scripts/lab-clean.sh --all
  say "lab: deploy"
  trap 'say "lab: destroy"; bash scripts/lab.sh down' EXIT
  bash scripts/lab.sh up
  say "lab: verification suite"
  visio verify lab --junit reports/verify.xml
  say "lab: no-op up, refresh/recreate, break-and-detect, rolling upgrade, lab machines"
  python -m pytest tests/lab -q -p no:cacheprovider --junitxml=reports/lab.xml
  trap - EXIT
  say "lab: destroy"
  bash scripts/lab.sh down
  say "lab: nothing left behind"
  python -m pytest tests/lab --after-destroy -q -p no:cacheprovider --junitxml=reports/lab-teardown.xml
}

case "$phase" in
  lint) lint ;;
  unit) unit ;;
  checks) lint; unit ;;
  lab) lab ;;
  all)
    # Lint and unit tests are independent of the lab: run them while the lab is being deployed
    # (their output is shown when they finish), then the lab phase's tests.
    # Each phase is its own process so `set -e` stays in force inside it.
    bash scripts/test.sh checks > reports/lint-unit.log 2>&1 &
    checks=$!
    lab_status=0
    bash scripts/test.sh lab || lab_status=$?
    checks_status=0
    wait "$checks" || checks_status=$?
    say "lint and unit tests (run alongside the lab):"
    cat reports/lint-unit.log
    [ "$checks_status" = 0 ] || { say "lint/unit FAILED"; exit "$checks_status"; }
    [ "$lab_status" = 0 ] || { say "lab phase FAILED"; exit "$lab_status"; }
    ;;
  *) echo "usage: scripts/test.sh [all|lint|unit|lab]" >&2; exit 2 ;;
esac
say "all requested phases passed"
