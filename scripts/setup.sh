#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine of this kind (idempotent, fast when warm):
# Debian packages, the project virtualenv from requirements.lock, the pinned toolchain.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the lab creates a bridge, NAT rules and systemd-nspawn machines."
command -v python3.11 >/dev/null || command -v python3 >/dev/null || die "Python 3.11 is required."

# Debian packages: the lab (debootstrap, systemd-nspawn, nftables), SSH for Ansible, clients the
# verification suite uses, Prometheus's own checkers (promtool, amtool) for the unit tests of the
# monitoring role, and headless Chromium that opens the stack's dashboard in the dashboard tests.
# Installed only when missing.
PACKAGES=(debootstrap systemd-container nftables iproute2 openssh-client ca-certificates
          postgresql-client redis-tools coturn curl git make ssh-audit testssl.sh prometheus
          prometheus-alertmanager chromium)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # coturn, prometheus and prometheus-alertmanager are installed for their tools only (TURN client,
  # promtool, amtool, and the dashboard test's own prometheus on 127.0.0.1): keep their daemons from
  # starting on the host...
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  # ...and from starting at the next boot (Prometheus would listen on every address).
  systemctl disable --quiet prometheus.service prometheus-alertmanager.service >/dev/null 2>&1 || true
fi

# Python virtualenv, exactly as pinned; rebuilt only when requirements.lock or pyproject change.
PY=$(command -v python3.11 || command -v python3)
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.visio-lock 2>/dev/null)" != "$want" ]; then
  say "creating the virtualenv .venv from requirements.lock"
  rm -rf .venv
  "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  # No build isolation: the project is built with the setuptools just installed from requirements.lock
  # instead of whatever setuptools release pip would otherwise download into a throw-away environment.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > .venv/.visio-lock
else
  say "virtualenv .venv is up to date"
fi

# The lab stack file gets a machine-local `encryptionsalt:` line from Pulumi: keep it out of git
# (see .gitattributes).
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$ROOT" config filter.pulumi-local-salt.clean "sed -e '/^encryptionsalt:/d'"
  git -C "$ROOT" config filter.pulumi-local-salt.smudge cat
fi

bash scripts/toolchain.sh all
say "done: 'source scripts/pulumi-env.sh' puts pulumi, livekit-server and visio on PATH"
