"""Base image cache: keyed by recipe, built atomically, an incomplete image is never used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visio_infra.cloud.lab import base_image
from visio_infra.cloud.lab.host import LabError
from visio_infra.model.apt_sources import Mirrors

MIRRORS = Mirrors("http://mirror.example/debian", "http://mirror.example/debian-security")
SPEC = base_image.recipe(MIRRORS)
OTHER_MIRRORS = Mirrors(
    "http://miroir.interieur.gouv.fr/debian", "http://miroir.interieur.gouv.fr/debian-security"
)


class FakeHost:
    """Stands in for debootstrap/chroot: writes a minimal tree, or fails halfway when asked to."""

    def __init__(self, fail: bool = False, fail_upgrade: bool = False):
        self.fail = fail
        self.fail_upgrade = fail_upgrade
        self.debootstraps = 0
        self.commands: list[list[str]] = []
        self.seen_during_upgrade: dict[str, bool] = {}

    def __call__(self, cmd, what, **_kwargs):
        self.commands.append(list(cmd))
        if "dist-upgrade" in cmd:
            tree = Path(cmd[1])
            self.seen_during_upgrade = {
                "policy-rc.d": (tree / base_image.POLICY_RC).is_file(),
                "security sources": "-security" in (tree / "etc/apt/sources.list").read_text(),
            }
            if self.fail_upgrade:
                raise LabError(f"{what}: apt-get exited with 100")
        if cmd[0] == "debootstrap":
            self.debootstraps += 1
            tree = Path(cmd[-2])
            (tree / "usr/lib/systemd").mkdir(parents=True)
            (tree / "etc/ssh").mkdir(parents=True)
            (tree / "etc/apt").mkdir(parents=True)
            (tree / "usr/sbin").mkdir(parents=True)
            (tree / "proc").mkdir(parents=True)
            (tree / "etc/ssh/ssh_host_ed25519_key").write_text("shared key")
            (tree / "var/log").mkdir(parents=True)
            if self.fail:
                raise LabError(f"{what}: debootstrap exited with 1")
            (tree / "usr/lib/systemd/systemd").write_text("")
        return None


@pytest.fixture
def fake(monkeypatch):
    host = FakeHost()
    monkeypatch.setattr(base_image, "run", host)
    monkeypatch.setattr(
        base_image, "remove_tree", lambda d: __import__("shutil").rmtree(d, ignore_errors=True)
    )
    return host


def test_recipe_hash_survives_the_trip_through_pulumi():
    """Pulumi turns every number into a float; the recipe holds strings only so its hash is stable."""

    def floats(value):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, dict):
            return {k: floats(v) for k, v in value.items()}
        if isinstance(value, list):
            return [floats(v) for v in value]
        return value

    assert base_image.recipe_hash(floats(json.loads(json.dumps(SPEC)))) == base_image.recipe_hash(SPEC)


def test_recipe_hash_changes_with_the_recipe():
    assert base_image.recipe_hash(SPEC) == base_image.recipe_hash(base_image.recipe(MIRRORS))
    other_mirror = base_image.recipe(OTHER_MIRRORS)
    assert base_image.recipe_hash(other_mirror) != base_image.recipe_hash(SPEC)
    other_security = base_image.recipe(Mirrors(MIRRORS.package, "http://security.mirror.example/debian"))
    assert base_image.recipe_hash(other_security) != base_image.recipe_hash(SPEC)
    assert "python3-apt" in SPEC["packages"] and "openssh-server" in SPEC["packages"]
    assert not {"postgresql", "coturn", "redis-server", "nginx"} & set(SPEC["packages"])


def test_the_image_carries_every_package_roles_common_installs():
    """roles/common's one install task finds its packages installed on a lab node (no download at each
    machine's converge); a package added to the role and not to the image fails here."""
    import yaml

    root = Path(__file__).resolve().parents[3]
    defaults = yaml.safe_load((root / "roles/common/defaults/main.yml").read_text(encoding="utf-8"))
    task = next(
        t for t in yaml.safe_load((root / "roles/common/tasks/apt.yml").read_text(encoding="utf-8"))
        if t["name"] == "Install the baseline, audit, hardening, metrics and time packages"
    )
    baseline = yaml.safe_load(task["ansible.builtin.apt"]["name"].split("+")[0].strip(" {"))
    wanted = {*baseline, *defaults["common_audit_packages"], *defaults["common_hardening_packages"]}
    # chrony only on a VM: a lab machine is a container, whose converge removes it.
    assert "chrony" not in SPEC["packages"]
    assert {"lynis", "ssh-audit", "libpam-tmpdir"} <= wanted
    assert wanted <= set(SPEC["packages"]), sorted(wanted - set(SPEC["packages"]))
    assert not set(defaults["common_absent_packages"]) & set(SPEC["packages"])


def test_built_once_then_cached(tmp_path, fake):
    path, _ = base_image.build(SPEC, tmp_path)
    assert path == tmp_path / "images" / base_image.recipe_hash(SPEC)
    assert base_image.is_complete(path)
    # No shared identity in the template: host keys and machine-id are per machine.
    assert not list((path / "etc/ssh").glob("ssh_host_*"))
    assert (path / "etc/machine-id").read_text() == ""
    assert (path / "etc/apt/sources.list").read_text() == (
        "deb http://mirror.example/debian bookworm main\n"
        "deb http://mirror.example/debian bookworm-updates main\n"
        "deb http://mirror.example/debian-security bookworm-security main\n"
    )
    again, seconds = base_image.build(SPEC, tmp_path)
    assert again == path and seconds == 0.0 and fake.debootstraps == 1


def test_failed_build_leaves_nothing_usable(tmp_path, fake):
    fake.fail = True
    with pytest.raises(LabError, match="debootstrap exited"):
        base_image.build(SPEC, tmp_path)
    images = tmp_path / "images"
    assert [p.name for p in images.iterdir() if p.name != ".build.lock"] == []
    fake.fail = False
    path, _ = base_image.build(SPEC, tmp_path)
    assert base_image.is_complete(path) and fake.debootstraps == 2


def test_incomplete_image_under_the_final_name_is_rebuilt(tmp_path, fake):
    target = base_image.image_dir(SPEC, tmp_path)
    (target / "usr/lib/systemd").mkdir(parents=True)  # no marker: e.g. copied by hand, or a crash
    assert not base_image.is_complete(target)
    path, _ = base_image.build(SPEC, tmp_path)
    assert path == target and base_image.is_complete(path) and fake.debootstraps == 1


def test_scratch_left_by_a_killed_build_is_discarded(tmp_path, fake):
    """A build killed outright (SIGKILL, power loss) leaves its scratch tree; the next build starts over."""
    scratch = tmp_path / "images" / f".tmp-{base_image.recipe_hash(SPEC)}"
    (scratch / "half").mkdir(parents=True)
    path, _ = base_image.build(SPEC, tmp_path)
    assert base_image.is_complete(path) and not scratch.exists()


# --- The build time, recorded in the marker and reported again when the image is reused ----------


class FakeClock:
    """`time.monotonic` for base_image; the `clock` fixture makes each debootstrap take `build_seconds`."""

    def __init__(self, build_seconds: float):
        self.now = 1000.0
        self.build_seconds = build_seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, fake):
    clock = FakeClock(42.04)
    monkeypatch.setattr(base_image, "time", clock)

    def slow_debootstrap(cmd, what, **kwargs):
        if cmd[0] == "debootstrap":
            clock.now += clock.build_seconds
        return FakeHost.__call__(fake, cmd, what, **kwargs)

    monkeypatch.setattr(base_image, "run", slow_debootstrap)
    return clock


@pytest.fixture
def provider(monkeypatch):
    """The dynamic provider with the host checks (root, tools, free disk) out of the way."""
    monkeypatch.setattr(base_image.preflight, "missing_tools", lambda: [])
    monkeypatch.setattr(base_image.preflight, "root_problems", lambda _euid: [])
    monkeypatch.setattr(base_image.preflight, "check_disk", lambda _path, _needed: None)
    return base_image.BaseImageProvider()


def _props(root: Path) -> dict:
    return {"recipe": SPEC, "root": str(root), "machines": 6.0, "path": None, "build_seconds": None}


def test_build_records_its_duration_in_the_marker(tmp_path, clock):
    path, seconds = base_image.build(SPEC, tmp_path)
    assert seconds == pytest.approx(42.04)
    assert base_image.recorded_build_seconds(path) == 42.0
    marker = json.loads((path / base_image.MARKER).read_text())
    assert {k: v for k, v in marker.items() if k != "build_seconds"} == SPEC  # still the recipe
    # Reusing the cached image neither rebuilds nor rewrites the figure.
    clock.build_seconds = 999.0
    again, seconds = base_image.build(SPEC, tmp_path)
    assert again == path and seconds == 0.0
    assert base_image.recorded_build_seconds(path) == 42.0


def test_recorded_build_seconds_of_images_without_a_figure(tmp_path):
    assert base_image.recorded_build_seconds(tmp_path / "absent") is None
    (tmp_path / base_image.MARKER).write_text(json.dumps(SPEC))  # marker written before it was recorded
    assert base_image.recorded_build_seconds(tmp_path) is None
    for junk in ("{not json", "[]", '{"build_seconds": "42"}', '{"build_seconds": true}'):
        (tmp_path / base_image.MARKER).write_text(junk)
        assert base_image.recorded_build_seconds(tmp_path) is None, junk
    (tmp_path / base_image.MARKER).write_text('{"build_seconds": 617}')
    assert base_image.recorded_build_seconds(tmp_path) == 617.0


def test_provider_reports_the_recorded_build_time_when_the_image_is_cached(tmp_path, clock, provider):
    built = provider.create(_props(tmp_path))
    assert built.outs["build_seconds"] == 42.0
    cached = provider.create(_props(tmp_path))  # e.g. the next `pulumi up` after a `pulumi destroy`
    assert cached.id == built.id and cached.outs["path"] == built.outs["path"]
    assert cached.outs["build_seconds"] == 42.0


def test_provider_reports_zero_for_a_cached_image_built_before_the_figure_was_recorded(
    tmp_path, fake, provider
):
    path, _ = base_image.build(SPEC, tmp_path)
    (path / base_image.MARKER).write_text(json.dumps(SPEC, sort_keys=True) + "\n")
    assert provider.create(_props(tmp_path)).outs["build_seconds"] == 0.0


def test_build_seconds_never_makes_a_diff(tmp_path, clock, provider):
    """A no-op `pulumi up` compares the new inputs (build_seconds None) with the stored outputs."""
    created = provider.create(_props(tmp_path))
    olds = provider.read(created.id, created.outs).outs
    assert olds["build_seconds"] == 42.0 and olds["present"] is True
    diff = provider.diff(created.id, olds, _props(tmp_path))
    assert diff.changes is False and diff.replaces == []
    # ...while the recipe still does.
    other = {**_props(tmp_path), "recipe": base_image.recipe(OTHER_MIRRORS)}
    assert provider.diff(created.id, olds, other).replaces == ["recipe"]


def test_the_image_is_built_with_its_security_updates_applied(tmp_path, fake):
    """debootstrap alone leaves the release's packages (a lab node had 25 pending security updates):
    the image is upgraded from its own sources, security suite included, with no service started in
    the chroot, and keeps no trace of the build's policy-rc.d or /proc mount."""
    path, _ = base_image.build(SPEC, tmp_path)
    upgrade = [cmd for cmd in fake.commands if "dist-upgrade" in cmd]
    assert len(upgrade) == 1
    assert upgrade[0][:2] == ["chroot", str(tmp_path / "images" / f".tmp-{path.name}")]
    assert fake.seen_during_upgrade == {"policy-rc.d": True, "security sources": True}
    index = fake.commands.index
    assert index(["chroot", upgrade[0][1], "apt-get", "update"]) < index(upgrade[0])
    mounted = [cmd for cmd in fake.commands if cmd[0] in ("mount", "umount")]
    assert [cmd[0] for cmd in mounted] == ["mount", "umount"]
    assert not (path / base_image.POLICY_RC).exists()


def test_a_failed_upgrade_unmounts_proc_and_leaves_no_image(tmp_path):
    host = FakeHost(fail_upgrade=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base_image, "run", host)
        patch.setattr(base_image, "remove_tree", lambda d: __import__("shutil").rmtree(d, ignore_errors=True))
        with pytest.raises(LabError, match="apt-get exited with 100"):
            base_image.build(SPEC, tmp_path)
    assert [cmd[0] for cmd in host.commands if cmd[0] in ("mount", "umount")] == ["mount", "umount"]
    assert not base_image.is_complete(base_image.image_dir(SPEC, tmp_path))
