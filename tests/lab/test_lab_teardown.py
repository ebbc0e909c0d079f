"""After `pulumi destroy --stack lab`: nothing of the lab is left on the host.

Run with `pytest tests/lab --after-destroy` once the lab is destroyed (scripts/test.sh does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab.conftest import host_leftovers
from tests.lab.lab_ops import STACK
from visio_infra.cloud.lab.plan import LAB_ROOT, LabPaths

pytestmark = pytest.mark.after_destroy


def test_destroy_leaves_no_process_interface_rule_mount_or_directory():
    assert host_leftovers(STACK) == []


def test_destroy_put_back_the_host_sysctls():
    # The record of what the lab changed is removed only after restoring it.
    assert not (LabPaths(STACK).run / "sysctl.json").exists()


def test_base_image_cache_is_kept_for_the_next_up():
    images = (
        [p for p in (LAB_ROOT / "images").iterdir() if not p.name.startswith(".")]
        if (LAB_ROOT / "images").exists()
        else []
    )
    assert images, "the cached base image should survive a destroy (lab-clean.sh --all --images removes it)"
    assert all(json.loads((p / "visio-lab-image.json").read_text())["suite"] == "bookworm" for p in images)
    assert not any(Path(LAB_ROOT / "images").glob(".tmp-*")), "a half-built image was left behind"
