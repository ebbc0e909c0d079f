#!/usr/bin/env bash
# Benchmark: prints measured numbers (no timed assertions anywhere in the tests).
#   toolchain cold build (recorded when it was built) and warm set-up, unit suite, mock evaluation
#   of every stack, then (with --lab) lab from nothing with the base image cached, no-op up,
#   verification suite and call figures.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
row() { printf '  %-52s %s\n' "$1" "$2"; }

bash scripts/setup.sh >/dev/null
source scripts/pulumi-env.sh
source toolchain/versions.env
echo "Visio infrastructure benchmark ($(date -u +%FT%TZ), $(nproc) cores)"

echo "toolchain"
for stamp in "$VISIO_TOOLCHAIN_DIR"/pulumi-"$PULUMI_VERSION"-*/.complete "$VISIO_TOOLCHAIN_DIR"/livekit-*/.complete; do
  [ -f "$stamp" ] || continue
  row "cold build $(basename "$(dirname "$stamp")") (s)" "$(sed -n 's/^build_seconds=//p' "$stamp")"
done
t0=$(now); bash scripts/toolchain.sh all >/dev/null; t1=$(now)
row "warm toolchain set-up (s)" "$(secs "$t0" "$t1")"
t0=$(now); bash scripts/setup.sh >/dev/null; t1=$(now)
row "warm full set-up, scripts/setup.sh (s)" "$(secs "$t0" "$t1")"

echo "unit"
t0=$(now); python -m pytest tests/unit -q -n 2 -p no:cacheprovider >/dev/null; t1=$(now)
row "unit suite, 2 workers (s)" "$(secs "$t0" "$t1")"
if [ -f tests/unit/test_program.py ]; then
  t0=$(now); python -m pytest tests/unit/test_program.py -q -p no:cacheprovider >/dev/null; t1=$(now)
  row "Pulumi program under mocks, every stack (s)" "$(secs "$t0" "$t1")"
fi

if [ "${1:-}" = "--lab" ]; then
  python -m visio_infra.bench_lab
fi
