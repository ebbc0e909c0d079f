"""Why the test run failed, in a few lines, for the very end of `scripts/test.sh`'s output.

CI keeps only the tail of a run's log, so the last lines must say what failed: the test cases that
failed in each JUnit report (name and the first line of the message) and, when the OpenStack cloud
did not come up, what it was still waiting for (reports/openstack-failure.txt, written by test.sh).

  python3 scripts/failure_summary.py [REPORT_DIR] [--max-lines N]
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def failed_cases(report: Path) -> list[str]:
    """One line per failed or errored test case of a JUnit XML report."""
    try:
        tree = ET.parse(report)  # noqa: S314 (our own pytest's report)
    except (ET.ParseError, OSError) as exc:
        return [f"{report.name}: unreadable ({exc})"]
    lines = []
    for case in tree.iter("testcase"):
        for kind in ("failure", "error"):
            problem = case.find(kind)
            if problem is None:
                continue
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            first = message[0][:160] if message else ""
            name = f"{case.get('classname', '')}::{case.get('name', '')}".removeprefix("tests.")
            lines.append(f"{report.stem}: {kind} {name}: {first}")
    return lines


def summary(report_dir: Path, max_lines: int) -> list[str]:
    lines: list[str] = []
    boot = report_dir / "openstack-failure.txt"
    if boot.is_file():
        lines += [f"openstack boot: {line}" for line in boot.read_text().splitlines() if line.strip()]
    for report in sorted(report_dir.glob("*.xml")):
        lines += failed_cases(report)
    if len(lines) > max_lines:
        left = len(lines) - max_lines + 1
        lines = [*lines[: max_lines - 1], f"... and {left} more (reports/*.xml)"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("report_dir", nargs="?", default="reports", type=Path)
    parser.add_argument("--max-lines", type=int, default=12)
    args = parser.parse_args()
    for line in summary(args.report_dir, args.max_lines):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
