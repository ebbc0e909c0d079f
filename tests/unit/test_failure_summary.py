"""scripts/failure_summary.py: the few lines that end a failed test run (CI keeps only the tail)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("failure_summary", ROOT / "scripts/failure_summary.py")
assert _spec and _spec.loader
failure_summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(failure_summary)

REPORT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.lab.test_drill_sfu" name="test_sfu_node_lost" time="1">
  <failure message="AssertionError: no rejoin within 90 s&#10;assert False">trace</failure></testcase>
<testcase classname="tests.lab.test_status" name="test_status" time="1"/>
<testcase classname="tests.lab.test_alert_turn" name="test_alert" time="1"><error message="">boom
second line</error></testcase>
</testsuite></testsuites>"""


def test_names_each_failed_case_with_the_first_line_of_its_message(tmp_path: Path):
    (tmp_path / "lab.xml").write_text(REPORT, encoding="utf-8")
    lines = failure_summary.summary(tmp_path, max_lines=12)
    assert lines == [
        "lab: failure lab.test_drill_sfu::test_sfu_node_lost: AssertionError: no rejoin within 90 s",
        "lab: error lab.test_alert_turn::test_alert: boom",
    ]


def test_the_cloud_boot_reason_comes_first_and_the_list_is_bounded(tmp_path: Path):
    (tmp_path / "lab.xml").write_text(REPORT, encoding="utf-8")
    (tmp_path / "openstack-failure.txt").write_text(
        "not ready after 900s: keystone: timed out\n\nmariadb active, keystone active\n", encoding="utf-8"
    )
    lines = failure_summary.summary(tmp_path, max_lines=3)
    assert lines == [
        "openstack boot: not ready after 900s: keystone: timed out",
        "openstack boot: mariadb active, keystone active",
        "... and 2 more (reports/*.xml)",
    ]


def test_an_unreadable_report_is_named_not_skipped(tmp_path: Path):
    (tmp_path / "unit.xml").write_text("<testsuites><testcase", encoding="utf-8")
    (line,) = failure_summary.summary(tmp_path, max_lines=12)
    assert line.startswith("unit.xml: unreadable")


def test_a_green_run_says_nothing(tmp_path: Path):
    green = '<testsuites><testsuite><testcase classname="tests.unit.t" name="ok"/></testsuite></testsuites>'
    (tmp_path / "unit.xml").write_text(green, encoding="utf-8")
    assert failure_summary.summary(tmp_path, max_lines=12) == []
