"""Where a lab machine's cgroups live and how they are removed (no Pulumi, no real cgroupfs: a
directory tree stands in for /sys/fs/cgroup)."""

from __future__ import annotations

from pathlib import Path

from visio_infra.cloud.lab.machine import machine_cgroup_dirs, remove_cgroups


def _hierarchy(path: Path, *files: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text("")


def test_a_hybrid_host_gives_the_machine_a_cgroup_in_both_systemd_hierarchies(tmp_path):
    _hierarchy(tmp_path / "systemd", "cgroup.procs")
    _hierarchy(tmp_path / "unified", "cgroup.procs")
    _hierarchy(tmp_path / "memory", "cgroup.procs")  # a controller: nspawn mounts it read-only, not ours
    assert machine_cgroup_dirs("lab", "lab-db-1", tmp_path) == [
        tmp_path / "systemd/visio-lab/visio-lab-lab-db-1",
        tmp_path / "unified/visio-lab/visio-lab-lab-db-1",
    ]


def test_a_legacy_host_without_unified_uses_the_named_hierarchy_only(tmp_path):
    _hierarchy(tmp_path / "systemd", "cgroup.procs")
    _hierarchy(tmp_path / "unified")  # the directory without a mounted cgroup2
    assert machine_cgroup_dirs("lab", "lab-db-1", tmp_path) == [
        tmp_path / "systemd/visio-lab/visio-lab-lab-db-1"
    ]


def test_a_pure_v2_host_uses_its_one_hierarchy(tmp_path):
    _hierarchy(tmp_path, "cgroup.procs", "cgroup.controllers")
    assert machine_cgroup_dirs("lab", "lab-db-1", tmp_path) == [tmp_path / "visio-lab/visio-lab-lab-db-1"]


def test_removing_takes_the_empty_cgroups_innermost_first_and_keeps_a_busy_one(tmp_path):
    stopped = tmp_path / "systemd/visio-lab/visio-lab-lab-db-1"
    (stopped / "payload/system.slice/nftables.service").mkdir(parents=True)
    (stopped / "supervisor").mkdir()
    busy = tmp_path / "unified/visio-lab/visio-lab-lab-db-1"
    (busy / "payload/init.scope").mkdir(parents=True)
    (busy / "payload/init.scope/still-running").write_text("")  # rmdir refuses, as cgroupfs does
    remove_cgroups([stopped, busy, tmp_path / "never-created"])
    assert not stopped.exists()
    assert (busy / "payload/init.scope").is_dir()
