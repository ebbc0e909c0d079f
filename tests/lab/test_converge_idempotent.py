"""A converge of the deployed lab with nothing changed changes nothing, asserted from the run's stats.

The lab was converged by `pulumi up` (scripts/lab.sh up). Re-applying the configuration the way an
operator does (`visio configure lab`: stack config + outputs, site playbook) must report
`changed=0` on every host in ansible-runner's recap, and so must a `--check --diff` run. This is
the role issue's "a second run reports 0 changed", counted by ansible, not grepped from text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.lab.lab_ops import STACK
from visio_infra.commands.configure import certificates_from_outputs, secrets_from_outputs
from visio_infra.commands.stack_outputs import read_outputs
from visio_infra.hosts import ansible_run
from visio_infra.model.stack_file import load_stack_file, stack_file


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    outputs = read_outputs(STACK, show_secrets=True)
    assert isinstance(outputs.get("inventory"), dict), "the lab is not deployed: run `scripts/lab.sh up`"
    return outputs


def _converge(outputs: dict[str, Any], **options: Any) -> ansible_run.RunResult:
    return ansible_run.converge(
        load_stack_file(stack_file(STACK)),
        outputs["inventory"],
        secrets_from_outputs(outputs),
        certificates_from_outputs(outputs),
        stack=STACK,
        raise_on_failure=False,
        **options,
    )


def _expected_hosts(outputs: dict[str, Any]) -> set[str]:
    return {host["name"] for hosts in outputs["inventory"]["groups"].values() for host in hosts}


@pytest.mark.parametrize("mode", ["apply", "check-diff"])
def test_second_converge_changes_nothing(mode: str, stack: dict[str, Any], record_property: Callable):
    options = {"check": True, "diff": True} if mode == "check-diff" else {}
    result = _converge(stack, **options)

    record_property("converge_seconds", round(result.duration_seconds, 1))
    assert result.succeeded, f"the converge failed:\n{result.summary()}\n" + "\n".join(result.failures)
    assert set(result.hosts) == _expected_hosts(stack), result.summary()
    changed = {host: stats.changed for host, stats in result.hosts.items() if stats.changed}
    assert not changed, f"a converge with nothing changed changed something: {changed}\n{result.summary()}"
    assert all(stats.ok > 0 for stats in result.hosts.values()), result.summary()
