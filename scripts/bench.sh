#!/usr/bin/env bash
# Benchmark: prints measured numbers (no timed assertions anywhere in the tests or here).
#   toolchain cold build of the builds in use (recorded when they were built) and warm set-up, unit
#   suite, mock evaluation of every stack, then (with --lab) lab from nothing with the base image
#   cached (and its build time, recorded when it was built), no-op up, verification suite and call
#   figures. The lab figures with a target in the issue say whether the target is met. With
#   --openstack: the test cloud's cold build (recorded) and cached up, every figure the acceptance
#   and preflight tests record (up, no-op up, grow, fault recovery, destroy, preflight), cloud down.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
row() { printf '  %-52s %s\n' "$1" "$2"; }
# "<seconds> (target < <limit> s: met|missed)"
against() { python3 -c 'import sys; s, limit = sys.argv[1:]
print(s, "(target <", limit, "s:", "met)" if float(s) < float(limit) else "missed)")' "$1" "$2"; }

bash scripts/setup.sh >/dev/null
source scripts/pulumi-env.sh
source toolchain/versions.env
echo "Visio infrastructure benchmark ($(date -u +%FT%TZ), $(nproc) cores)"

echo "toolchain"
# Only the builds in use: the ones bin/'s links point to (<cache>/<tool>-<version>/bin/<tool>, with
# the `.complete` stamp scripts/toolchain.sh wrote); older cache directories are stale. A link to a
# copy found on PATH has no stamp.
cache=$(readlink -f "$VISIO_TOOLCHAIN_DIR")
for link in pulumi livekit-server "livekit-server-$LIVEKIT_PREVIOUS_VERSION"; do
  if ! target=$(readlink -e "$VISIO_TOOLCHAIN_DIR/bin/$link"); then
    row "cold build $link" "not set up (no $VISIO_TOOLCHAIN_DIR/bin/$link)"
    continue
  fi
  build=$(dirname "$(dirname "$target")")
  if [ "$(dirname "$build")" = "$cache" ] && [ -f "$build/.complete" ]; then
    row "cold build $(basename "$build") (s)" "$(sed -n 's/^build_seconds=//p' "$build/.complete")"
  else
    row "cold build $link" "from PATH (not built here)"
  fi
done
# The resource plugins built from the source mirror (scripts/toolchain.sh plugins).
for plugin in "openstack $OPENSTACK_PLUGIN_VERSION" "random $RANDOM_PLUGIN_VERSION"; do
  set -- $plugin
  stamp=$VISIO_TOOLCHAIN_DIR/plugin-$1-$2/.complete
  if [ -f "$stamp" ]; then
    row "cold build plugin-$1-$2, from the source mirror (s)" "$(sed -n 's/^build_seconds=//p' "$stamp")"
  else
    row "cold build plugin-$1-$2" "not built here (no $stamp)"
  fi
done
t0=$(now); bash scripts/toolchain.sh all >/dev/null; t1=$(now)
row "warm toolchain set-up (s)" "$(secs "$t0" "$t1")"
t0=$(now); bash scripts/setup.sh >/dev/null; t1=$(now)
row "warm full set-up, scripts/setup.sh (s)" "$(secs "$t0" "$t1")"

echo "unit"
t0=$(now); python -m pytest tests/unit -q -n 2 -p no:cacheprovider >/dev/null; t1=$(now)
row "unit suite, 2 workers (s)" "$(secs "$t0" "$t1")"
# The real program evaluated under Pulumi mocks, stack by stack, without pytest (start-up, asserts).
PYTHONPATH="$ROOT" "$VISIO_PYTHON" tests/unit/pulumi_mocks.py >/tmp/bench-mocks.json
while read -r stack resources seconds; do
  row "program under mocks: $stack, $resources resources (s)" "$seconds"
done < <(python3 -c 'import json,sys
for stack, run in json.load(open(sys.argv[1]))["stacks"].items():
    print(stack, run["resources"], "%.2f" % run["seconds"])' /tmp/bench-mocks.json)
row "program under mocks: every stack, total (s)" \
  "$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["total_seconds"])' /tmp/bench-mocks.json)"

want_lab=0; want_openstack=0
for arg in "$@"; do
  case "$arg" in
    --lab) want_lab=1 ;;
    --openstack) want_openstack=1 ;;
    *) echo "usage: scripts/bench.sh [--lab] [--openstack]" >&2; exit 2 ;;
  esac
done

if [ "$want_openstack" = 1 ]; then
  echo "OpenStack (scripts/openstack-cloud.sh, tests/openstack)"
  bash scripts/openstack-cloud.sh down >/dev/null 2>&1 || true
  t0=$(now); bash scripts/openstack-cloud.sh up >/tmp/bench-cloud-up.log 2>&1; t1=$(now)
  # The cold build time is the one the cached root recorded when it was built (a first `up` above
  # may have built it: then the cached `up` is measured again below).
  stamp=$(ls -t "${VISIO_OPENSTACK_DIR:-$HOME/.cache/visio-openstack}"/roots/*/stamp.json 2>/dev/null | head -1)
  row "cloud root build, cold, when it was built (s)" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["build_seconds"])' "$stamp" 2>/dev/null || echo '?')"
  if grep -q 'built root' /tmp/bench-cloud-up.log; then
    bash scripts/openstack-cloud.sh down >/dev/null
    t0=$(now); bash scripts/openstack-cloud.sh up >/tmp/bench-cloud-up.log 2>&1; t1=$(now)
  fi
  row "cloud up from the cached root (s)" "$(secs "$t0" "$t1")"
  python -m pytest tests/openstack -q -p no:cacheprovider --junitxml=/tmp/bench-openstack.xml \
    >/tmp/bench-openstack.log 2>&1 || echo "  (acceptance tests FAILED: /tmp/bench-openstack.log)"
  # Every figure the acceptance and preflight tests recorded (record_property), in test order.
  python3 -c 'import sys,xml.etree.ElementTree as E
for case in E.parse(sys.argv[1]).iter("testcase"):
    for p in case.iter("property"):
        print("  %-52s %s" % (p.get("name").replace("_", " ") + (" (s)" if p.get("name").endswith("seconds") else ""), p.get("value")))' \
    /tmp/bench-openstack.xml
  t0=$(now); bash scripts/openstack-cloud.sh down >/dev/null; t1=$(now)
  row "cloud down (s)" "$(secs "$t0" "$t1")"
fi

echo "CI phases of the last 'make test' in this checkout (reports/phases.tsv)"
if [ -s reports/phases.tsv ]; then
  awk -F'\t' '{ printf "  %-52s %s%s\n", $1 " (s)", $2, ($3 == "0" || $3 == "-" ? "" : "  FAILED") }' reports/phases.tsv
else
  row "(none yet: run make test)" ""
fi
# Lynis on every node in the last verify run that ran it (`visio verify <stack> --hardening`, as CI's
# first verify of the lab does): one line per node (hardening index against its target, warnings).
lynis_run=$(ls -td reports/verify-*/ 2>/dev/null | while read -r dir; do
  compgen -G "${dir}lynis-*.json" >/dev/null && { echo "$dir"; break; }; done || true)
if [ -n "$lynis_run" ]; then
  echo "Lynis per node, last hardening verify ($lynis_run)"
  python -c 'import sys; from pathlib import Path
from visio_infra.commands.verify import lynis_lines, read_lynis_reports
for line in lynis_lines(read_lynis_reports(Path(sys.argv[1]))): print("  " + line)' "$lynis_run"
else
  echo "Lynis per node: no verify run with --hardening in reports/ yet"
fi
# Every figure the lab tests recorded in that run (fault drills, rollouts, converges: record_property).
for xml in reports/lab.xml reports/lab-drills.xml; do
  [ -s "$xml" ] || continue
  echo "lab test figures of that run ($xml)"
  python3 -c 'import sys,xml.etree.ElementTree as E
for case in E.parse(sys.argv[1]).iter("testcase"):
    for p in case.iter("property"):
        print("  %-52s %s" % (p.get("name").replace("_", " ") + (" (s)" if p.get("name").endswith("seconds") else ""), p.get("value")))' \
    "$xml"
done
# The load test of that run (tests/lab/test_loadtest.py): measured per participant next to the model.
if [ -s reports/loadtest-lab.json ]; then
  echo "load test of that run (reports/loadtest-lab.json): per participant, model vs measured"
  python3 -c 'import json,sys
r = json.load(open(sys.argv[1])); m = r["model"]
print("  %-52s %s" % ("load", "%d rooms x %d participants, %s s" % (r["rooms"], r["participants_per_room"], r["window_s"])))
print("  %-52s %d/%d" % ("joins", r["joins_ok"], r["joins_total"]))
print("  %-52s p50 %s, p95 %s" % ("join -> first frame (s)", r["first_frame_p50_s"], r["first_frame_p95_s"]))
print("  %-52s %s" % ("received video (fps per remote track)", r["received_fps"]))
for label, key, measured in (("SFU vCPU", "vcpu_per_video_participant", "vcpu_per_participant"),
                             ("SFU egress (Mbit/s)", "mbps_out_per_video_participant", "mbps_out_per_participant"),
                             ("SFU ingress (Mbit/s)", "mbps_in_per_video_participant", "mbps_in_per_participant")):
    print("  %-52s model %s, measured %s" % (label, m.get(key), r[measured]))' reports/loadtest-lab.json
fi

[ "$want_lab" = 1 ] || { echo "(add --lab for the lab figures: it rebuilds the lab from nothing)"; exit 0; }

echo "lab (base image cached unless noted)"
pulumi stack select --create lab >/dev/null
bash scripts/lab.sh down >/dev/null 2>&1 || true
t0=$(now); pulumi up --stack lab --yes --non-interactive >/tmp/bench-lab-up.log 2>&1; t1=$(now)
row "nothing -> configured lab, pulumi up (s)" "$(against "$(secs "$t0" "$t1")" 180)"
# Where that time went: Pulumi's own per-resource durations ("created (12s)") in its output, by stage.
# Machines are created in parallel (the slowest one counts); the converge is HostConfiguration.
while IFS=$'\t' read -r label value; do row "  $label" "$value"; done < <(python3 - /tmp/bench-lab-up.log <<'PY'
import re, sys
stages = {"BaseImage": "base image (cached: checked)", "Network": "bridge", "KeyPair": "SSH key",
          "Machine": "machines, slowest of them", "Certificates": "stack CA and certificates",
          "HostConfiguration": "converge (Ansible, Mitogen)"}
seen = {}
line_re = re.compile(r"dynamic(?:/[\w-]+)?:(\w+) \S+ (?:created|updated)(?: replacement)? \((?:(\d+)m)?([\d.]+)s\)")
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    for kind, minutes, number in line_re.findall(line):
        if kind in stages:
            seconds = int(minutes or 0) * 60 + float(number)
            seen[kind] = max(seen.get(kind, 0.0), seconds)
for kind, label in stages.items():
    print(f"{label} (s)\t{seen[kind]:.1f}" if kind in seen else f"{label}\tnot in the output")
PY
)
# The BaseImage resource reports the build time its image's marker recorded, whether this `up`
# built the image or found it cached (0.0: an image built before build times were recorded).
row "base image build, when it was built (s)" \
  "$(pulumi stack export --stack lab | python3 -c 'import json,sys
for r in json.load(sys.stdin)["deployment"]["resources"]:
    s = r.get("outputs", {}).get("build_seconds")
    if s is not None: print(s)' | head -1)"
t0=$(now); pulumi up --stack lab --yes --expect-no-changes --non-interactive >/dev/null; t1=$(now)
row "no-op pulumi up, 0 changes (s)" "$(against "$(secs "$t0" "$t1")" 60)"
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
echo "no-change converge of the lab, Mitogen vs linear in one run (scripts/converge_strategies.py, M L L M)"
python scripts/converge_strategies.py lab >/tmp/bench-strategies.json 2>/tmp/bench-strategies.err \
  || echo "  (a converge failed or changed something: /tmp/bench-strategies.*, artifacts/lab/converge-*.log)"
while IFS=$'\t' read -r label value; do row "$label" "$value"; done < <(python3 -c 'import json,sys
f = json.load(open(sys.argv[1]))
for name in ("linear", "mitogen_linear"):
    r = f["fastest"][name]
    every = " ".join(str(x["seconds"]) for x in f["runs"] if x["requested"] == name)
    print("site playbook, %s, %d hosts, fastest (s)\t%s (%d tasks, %d changed, %d failed; runs: %s)"
          % (name, r["hosts"], r["seconds"], r["tasks"], r["changed"], r["failed"], every))
verdict = "met" if f["ratio"] <= 0.40 else "missed"
same = "same task counts" if f["same_tasks"] else "task counts DIFFER"
used = "" if f["mitogen_used"] else "; Mitogen NOT used (see /tmp/bench-strategies.err)"
print("mitogen_linear / linear\t%.0f %% (target <= 40 %%: %s; %s%s)" % (100 * f["ratio"], verdict, same, used))' \
  /tmp/bench-strategies.json 2>/dev/null || echo "  (no figures: /tmp/bench-strategies.err)")
t0=$(now); bash scripts/lab.sh down >/dev/null; t1=$(now)
row "pulumi destroy --stack lab (s)" "$(secs "$t0" "$t1")"
