"""The lab's base image: a Debian 12 root tree built once with debootstrap and cached by recipe.

The image lives in /var/lib/visio-lab/images/<recipe-hash>/ outside the repository, is built in a
temporary directory and renamed into place only when complete (a `visio-lab-image.json` marker is
the last thing written), so a half-built image is never used. Changing the recipe (packages,
mirror, customisation version) changes the hash and so builds a new image; machines copy it.
The marker holds the recipe and how long the build took (`build_seconds`), so the figure survives
the image being reused by later deployments (`recorded_build_seconds`, read by scripts/bench.sh).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from visio_infra.cloud.lab import preflight
from visio_infra.cloud.lab.host import remove_tree, run
from visio_infra.cloud.lab.plan import LAB_ROOT, disk_needed
from visio_infra.model.apt_sources import SUITE, Mirrors

PACKAGES = (
    # A booting Debian with systemd and sshd, reachable by Ansible.
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    # What every role needs anyway: pre-included so each converge does not download them six times.
    "python3-apt",
    "acl",
    "iproute2",
    "ca-certificates",
    "nftables",
    "unattended-upgrades",
    "procps",
    "iputils-ping",
    "less",
    "curl",
    "gnupg",
    "sudo",
    "locales",
    "tzdata",
    # roles/common's audit tools and hardening packages (its one install task finds them here).
    "ssh-audit",
    "lynis",
    "libpam-tmpdir",
    "libpam-pwquality",
    "debsums",
    "apt-listchanges",
    # roles/common's metrics: the node exporter, without its recommended collector timers (debootstrap
    # installs no recommends). No chrony: a lab machine is a container, whose host owns the clock.
    "prometheus-node-exporter",
)
"""Packages on top of debootstrap's minbase. No service of a role (PostgreSQL, coturn...) here:
every machine would run it, and the verification suite checks each role listens only where it should."""

CUSTOMISATION_VERSION = "2"
"""Bump when `_customise` changes, so the recipe hash (and the cached image) changes with it."""

MARKER = "visio-lab-image.json"
"""Written last into a complete image: the recipe's keys plus `build_seconds`."""


def recipe(mirrors: Mirrors) -> dict[str, Any]:
    """Everything that decides the image's content. Strings only: the recipe travels through Pulumi,
    where every number becomes a float (1 -> 1.0), which would change its hash."""
    return {
        "suite": SUITE,
        "variant": "minbase",
        "packages": sorted(PACKAGES),
        "mirror": mirrors.package,
        "security_mirror": mirrors.security,
        "customisation": CUSTOMISATION_VERSION,
    }


def recipe_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def image_dir(spec: dict[str, Any], root: Path = LAB_ROOT) -> Path:
    return root / "images" / recipe_hash(spec)


def is_complete(directory: Path) -> bool:
    return (directory / MARKER).is_file() and (directory / "usr/lib/systemd/systemd").exists()


def write_marker(directory: Path, spec: dict[str, Any], seconds: float) -> None:
    """Mark `directory` as a complete image of `spec` that took `seconds` to build."""
    marker = {**spec, "build_seconds": round(seconds, 1)}
    (directory / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="ascii")


def recorded_build_seconds(directory: Path) -> float | None:
    """How long the image in `directory` took to build, as recorded in its marker when it was built.

    None when there is no readable marker, or it predates build times being recorded."""
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    seconds = marker.get("build_seconds") if isinstance(marker, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    return float(seconds)


def tree_size(directory: Path) -> int:
    result = run(["du", "-sb", str(directory)], "measuring the base image")
    return int(result.stdout.split()[0])


POLICY_RC = "usr/sbin/policy-rc.d"
"""Present only while the image is upgraded: tells maintainer scripts not to start services in the chroot."""


def _apply_updates(tree: Path) -> None:
    """Bring the tree up to date with its own sources (the security suite included).

    debootstrap installs the suite's release packages only: a machine copied from it started with
    about 25 pending security updates, left to the nodes' daily unattended-upgrades run. The image is
    cached, so this costs once per recipe; unattended-upgrades still applies whatever is published
    after the image was built."""
    policy = tree / POLICY_RC
    policy.write_text("#!/bin/sh\n# Visio lab image build: no service starts in the chroot.\nexit 101\n")
    policy.chmod(0o755)
    proc = tree / "proc"
    run(["mount", "-t", "proc", "proc", str(proc)], "mounting /proc for the base image's upgrade")
    try:
        run(["chroot", str(tree), "apt-get", "update"], "updating the base image's package lists")
        run(
            [
                "chroot",
                str(tree),
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "-y",
                "-o",
                "Dpkg::Options::=--force-confold",
                "dist-upgrade",
            ],
            "applying the pending (security) updates to the base image",
            timeout=1800,
        )
    finally:
        run(["umount", str(proc)], "unmounting the base image's /proc", check=False)
        policy.unlink(missing_ok=True)


def _customise(tree: Path, spec: dict[str, Any]) -> None:
    """Make the debootstrapped tree a good template: no shared identity, networkd on, sshd keys-only."""
    (tree / "etc/apt/sources.list").write_text(
        f"deb {spec['mirror']} {SUITE} main\n"
        f"deb {spec['mirror']} {SUITE}-updates main\n"
        f"deb {spec['security_mirror']} {SUITE}-security main\n",
        encoding="ascii",
    )
    _apply_updates(tree)
    # Identity is per machine: host keys and machine-id are written when a machine is created.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tree / "etc/machine-id").write_text("", encoding="ascii")
    dbus_id = tree / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    (tree / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (tree / "etc/ssh/sshd_config.d/10-visio-lab.conf").write_text(
        "# Visio lab: root by key only (the common role hardens further).\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
        encoding="ascii",
    )
    run(
        ["chroot", str(tree), "systemctl", "enable", "systemd-networkd.service", "ssh.service"],
        "enabling networkd and sshd in the base image",
    )
    # Units that only make sense on real hardware or fail noisily in a container.
    run(
        [
            "chroot",
            str(tree),
            "systemctl",
            "mask",
            "systemd-networkd-wait-online.service",
            "getty@tty1.service",
        ],
        "masking hardware-only units in the base image",
    )
    run(["chroot", str(tree), "apt-get", "clean"], "cleaning the apt cache of the base image")
    for leftover in (tree / "var/log").glob("*.log"):
        leftover.unlink()


def build(spec: dict[str, Any], root: Path = LAB_ROOT, log: Any = None) -> tuple[Path, float]:
    """Return (path, seconds spent building by this call; 0 when cached). Safe against concurrent
    callers. A built image records its build time in its marker (see `recorded_build_seconds`)."""
    target = image_dir(spec, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(target):
            return target, 0.0
        if target.exists():  # an incomplete leftover under the final name: never use it
            remove_tree(target)
        started = time.monotonic()
        scratch = target.parent / f".tmp-{target.name}"
        remove_tree(scratch)
        if log:
            log(f"building the lab base image {target.name} with debootstrap (once; cached afterwards)")
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(spec['packages'])}",
                    spec["suite"],
                    str(scratch),
                    spec["mirror"],
                ],
                "building the lab base image with debootstrap (check that the host reaches the mirror "
                f"{spec['mirror']})",
                timeout=1800,
            )
            _customise(scratch, spec)
            seconds = time.monotonic() - started
            write_marker(scratch, spec, seconds)
            scratch.rename(target)
        except BaseException:
            remove_tree(scratch)
            raise
        return target, seconds


class BaseImageProvider(pulumi.dynamic.ResourceProvider):
    """Builds (or finds cached) the base image. Deleting the resource keeps the cache on purpose:
    it is not part of a deployment; `scripts/lab-clean.sh --old-images` (or `--all --images`) removes it."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        root = Path(props["root"])
        preflight.raise_if(
            preflight.root_problems(os.geteuid()) + preflight.tool_problems(preflight.missing_tools())
        )
        cached = is_complete(image_dir(props["recipe"], root))
        preflight.check_disk(root, disk_needed(int(props.get("machines") or 0), image_cached=cached))
        path, _ = build(props["recipe"], root)
        # From the marker, whether this call built the image or found it cached.
        seconds = recorded_build_seconds(path) or 0.0
        return pulumi.dynamic.CreateResult(
            id_=path.name, outs={**props, "path": str(path), "build_seconds": round(seconds, 1)}
        )

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        path = Path(props.get("path", ""))
        return pulumi.dynamic.ReadResult(id_=id_, outs={**props, "present": bool(path) and is_complete(path)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in ("recipe", "root") if olds.get(key) != news.get(key)]
        if olds.get("present") is False:
            replaces.append("present")
        return pulumi.dynamic.DiffResult(
            changes=bool(replaces), replaces=replaces, delete_before_replace=False
        )

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class BaseImage(pulumi.dynamic.Resource, module="visio-lab", name="BaseImage"):
    """The cached Debian 12 image lab machines are copied from."""

    path: pulumi.Output[str]
    build_seconds: pulumi.Output[float]
    """How long the image took to build when it was built (also when this deployment reused it from
    the cache); 0.0 for an image built before build times were recorded in its marker."""

    def __init__(
        self,
        name: str,
        mirrors: Mirrors,
        machines: int,
        root: str = str(LAB_ROOT),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            BaseImageProvider(),
            name,
            {
                "recipe": recipe(mirrors),
                "root": root,
                "machines": machines,
                "path": None,
                "build_seconds": None,
            },
            opts,
        )
