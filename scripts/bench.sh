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

[ "${1:-}" = "--lab" ] || { echo "(add --lab for the lab figures: it rebuilds the lab from nothing)"; exit 0; }

echo "lab (base image cached unless noted)"
pulumi stack select --create lab >/dev/null
bash scripts/lab.sh down >/dev/null 2>&1 || true
t0=$(now); pulumi up --stack lab --yes --non-interactive >/tmp/bench-lab-up.log 2>&1; t1=$(now)
row "nothing -> configured lab, pulumi up (s)" "$(secs "$t0" "$t1")"
row "base image build when it was built (s)" \
  "$(pulumi stack export --stack lab | python3 -c 'import json,sys
for r in json.load(sys.stdin)["deployment"]["resources"]:
    s = r.get("outputs", {}).get("build_seconds")
    if s is not None: print(s)' | head -1)"
t0=$(now); pulumi up --stack lab --yes --expect-no-changes --non-interactive >/dev/null; t1=$(now)
row "no-op pulumi up, 0 changes (s)" "$(secs "$t0" "$t1")"
t0=$(now); visio verify lab >/tmp/bench-verify.log 2>&1 || echo "  (verification FAILED: /tmp/bench-verify.log)"; t1=$(now)
row "visio verify lab, whole suite (s)" "$(secs "$t0" "$t1")"
report=$(ls -td reports/verify-lab-*/ | head -1)
for mode in direct relay; do
  row "join -> first video frame, $mode (ms, per SFU node)" \
    "$(python3 -c 'import json,sys,glob
print(" ".join(str(json.load(open(f))["first_video_ms"]) for f in sorted(glob.glob(sys.argv[1]+"call-*-"+sys.argv[2]+".json"))))' "$report" "$mode")"
done
echo "rolling LiveKit upgrade (tests/lab/test_rolling_upgrade.py)"
python -m pytest tests/lab/test_rolling_upgrade.py -s -q -p no:cacheprovider 2>&1 | grep '^UPGRADE-' | sed 's/^/  /'
echo "PostgreSQL minor update and coturn rolling restart with a relayed call (tests/lab/test_rolling_turn_db.py)"
python -m pytest tests/lab/test_rolling_turn_db.py -s -q -p no:cacheprovider 2>&1 | grep '^UPGRADE-' | sed 's/^/  /'
echo "second converge, nothing changed (tests/lab/test_converge_idempotent.py)"
python -m pytest tests/lab/test_converge_idempotent.py -q -p no:cacheprovider -k apply \
  --junitxml=/tmp/bench-idempotent.xml >/dev/null 2>&1 || echo "  (FAILED: a converge changed something)"
row "site playbook on every host, 0 changed (s)" "$(python3 -c 'import sys,xml.etree.ElementTree as E
for p in E.parse(sys.argv[1]).iter("property"):
    if p.get("name") == "converge_seconds": print(p.get("value"))' /tmp/bench-idempotent.xml)"
t0=$(now); bash scripts/lab.sh down >/dev/null; t1=$(now)
row "pulumi destroy --stack lab (s)" "$(secs "$t0" "$t1")"
