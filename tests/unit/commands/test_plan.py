"""`visio plan <stack>` through the real CLI entry point, for every shipped stack and a broken one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import STACKS_DIR

from visio_infra.commands.cli import main
from visio_infra.commands.plan import LICENCE_EUR_PER_USER_YEAR
from visio_infra.model import pricing
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sizing.plan import plan


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_report_matches_sizing(
    capsys: pytest.CaptureFixture[str], stack_name: str, stack_config: StackConfig
) -> None:
    code, out, err = run(capsys, stack_name, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    expected = plan(stack_config)
    assert report["stack"] == stack_name
    assert [r["role"] for r in report["roles"]] == list(ROLES)
    offer = pricing.offer(report["offer"])
    for row in report["roles"]:
        role = row["role"]
        assert row["count"] == expected.counts[role]
        assert row["flavor"] == expected.flavors[role]
        flavor = offer.flavor(row["flavor"])
        assert row["vcpu"] == row["count"] * flavor.vcpu
        # the role's cost is at least its instances, and what the extras (volumes, IPs) add is bounded
        assert row["monthly_eur"] >= row["count"] * flavor.eur_month - 1e-6
        assert row["reasoning"], role
    assert report["nodes"] == sum(expected.counts.values())
    assert report["monthly_eur"] == pytest.approx(sum(r["monthly_eur"] for r in report["roles"]), abs=0.01)
    assert report["yearly_eur"] == pytest.approx(12 * report["monthly_eur"], abs=0.01)
    users = stack_config.audience.users
    assert report["licences_yearly_eur"] == pytest.approx(users * LICENCE_EUR_PER_USER_YEAR)
    assert report["savings_yearly_eur"] == pytest.approx(report["licences_yearly_eur"] - report["yearly_eur"])


ROW = re.compile(r"^(sfu|turn|db|redis|bastion|monitoring)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+([\d ]+)$")


def test_text_report_shows_table_reasoning_and_costs(
    capsys: pytest.CaptureFixture[str], stack_name: str, stack_config: StackConfig
) -> None:
    code, out, err = run(capsys, stack_name)
    assert code == 0, err
    expected = plan(stack_config)
    rows = {m.group(1): m for m in (ROW.match(line) for line in out.splitlines()) if m}
    assert set(rows) == set(ROLES), out
    for role, match in rows.items():
        count = int(match.group(2))
        assert count == expected.counts[role]
        if count:
            assert match.group(3) == expected.flavors[role]
        assert int(match.group(4)) == count * expected.roles[role].flavor.vcpu
        assert int(match.group(6).replace(" ", "")) == round(expected.roles[role].monthly_eur)
    # every reasoning row is printed, under its role
    for role in ROLES:
        for reason in expected.roles[role].reasoning:
            assert f"  - {reason.what}: {reason.formula} = {reason.value}" in out
    yearly = f"{expected.yearly_eur:,.0f}".replace(",", " ")
    assert f"EUR {yearly} per year" in out
    licences = f"{stack_config.audience.users * LICENCE_EUR_PER_USER_YEAR:,.0f}".replace(",", " ")
    assert f"licences replaced:  EUR {licences} per year" in out
    assert "estimates" in out
    limit = getattr(stack_config.cloud, "server_group_max_members", None)
    if limit is None:  # the lab has no server groups
        assert "Anti-affinity server groups" not in out
    else:
        groups = ", ".join(f"{r} {-(-n // limit)}" for r, n in expected.counts.items() if n)
        assert f"(at most {limit} servers each, cloud.server_group_max_members): {groups}." in out


def test_ministry_costs_far_less_than_the_licences(capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's case: ~EUR 1M a year per 100,000 users; the infrastructure must be a fraction of it."""
    code, out, _ = run(capsys, "education", "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["yearly_eur"] < report["licences_yearly_eur"] / 5


def test_stacks_dir_and_path_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "Pulumi.copy.yaml").write_text(
        (STACKS_DIR / "Pulumi.culture.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    code, out, err = run(capsys, "copy", "--stacks-dir", str(tmp_path), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["stack"] == "copy"
    code, out, err = run(capsys, str(tmp_path / "Pulumi.copy.yaml"), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["ministry"] == "Ministère de la Culture"


def test_bad_stack_exits_non_zero_with_the_config_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (STACKS_DIR / "Pulumi.culture.yaml").read_text(encoding="utf-8")
    text = text.replace("admin_cidrs: [203.0.113.16/28]", "admin_cidrs: [0.0.0.0/0]")
    text = text.replace("livekit: 1.13.11", "livekit: 1.9.10")
    assert "0.0.0.0/0" in text and "1.9.10" in text
    (tmp_path / "Pulumi.broken.yaml").write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "broken", "--stacks-dir", str(tmp_path))
    assert code == 1
    assert out == ""
    assert "Pulumi.broken.yaml: 2 problem(s)" in err
    assert "visio:network.admin_cidrs: 0.0.0.0/0 opens SSH to the whole Internet" in err
    assert "visio:versions.livekit: LiveKit 1.9.10 is a known-bad release" in err


def test_unknown_stack_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "nosuch")
    assert code == 1
    assert "file not found" in err and "interieur" in err and "lab" in err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lab", "--format", "xml")
    assert code == 2
    assert "invalid choice" in err
