"""Test helpers: a sample OpenStack stack config, and Pulumi mocks that record every registration."""

from __future__ import annotations

import copy
from typing import Any

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq5m0tZ1yQ0m7l8CxkO1cV7o3bqB0o0bq2kHk0T9pWz ops@exemple.fr"

OPENSTACK_SAMPLE: dict[str, Any] = {
    "visio:ministry": {"slug": "sample", "name": "Ministère de l'Exemple"},
    "visio:cloud": {
        "kind": "openstack",
        "offer": "nubo",
        "cloud": "sample",
        "region": "RegionOne",
        "external_network": "ext-net",
        "image": "debian-12-genericcloud",
        "availability_zones": ["az1", "az2", "az3"],
        "encrypted_volume_type": "ceph-ssd-luks",
        "dns_zone": "visio.exemple.gouv.fr",
        "package_mirror": "https://miroir.exemple.gouv.fr/debian",
        "ssh_public_keys": [SSH_KEY],
    },
    "visio:audience": {"users": 20000, "peak_participants": 2000, "video_share": 0.5,
                       "largest_meeting": 150, "turn_share": 0.2},
    "visio:versions": {"livekit": "1.13.11"},
    "visio:network": {
        "edge_cidr": "10.20.0.0/24",
        "data_cidr": "10.20.1.0/24",
        "admin_cidr": "10.20.2.0/24",
        "app_cidr": "10.30.0.0/24",
        "monitoring_cidr": "10.40.0.0/28",
        "admin_cidrs": ["192.0.2.0/28", "2001:db8::/48"],
    },
    "visio:domains": {"signalling": "sfu.visio.exemple.gouv.fr", "turn": "turn.visio.exemple.gouv.fr"},
    "visio:tls": {"source": "stack-ca"},
}


def sample_raw(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the sample config; `section={...}` overrides merge into that `visio:` section."""
    raw = copy.deepcopy(OPENSTACK_SAMPLE)
    for section, value in overrides.items():
        key = f"visio:{section}"
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def sample_config(**overrides: Any):
    from visio_infra.model.stack_file import parse_stack_config

    return parse_stack_config(sample_raw(**overrides), source="tests/sample")


# --- Running the real program under Pulumi mocks -------------------------------------------------

import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import string  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import pulumi  # noqa: E402
from pulumi.runtime import mocks as pulumi_mocks_runtime  # noqa: E402

from visio_infra.cloud.generated_secret import KIND as GENERATED_SECRET_KIND  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script by scripts/bench.sh too
from conftest import shipped_stack_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STACKS_DIR = ROOT / "stacks"
FLOATING_POOL = ipaddress.ip_network("203.0.113.0/24")
"""TEST-NET-3: the addresses the mocked cloud hands out as floating IPs."""


@dataclass
class Registration:
    """One resource the program registered, as the engine saw it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    ignore_changes: list[str] = field(default_factory=list)
    provider: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    delete_before_replace: bool = False


@dataclass
class ProgramRun:
    """What one evaluation of the program produced."""

    stack: str
    resources: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Provider functions the program invoked (token, arguments)."""

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.resources}


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like a small OpenStack cloud: ids, floating addresses, random strings."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._next_ip = 10

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        state = dict(args.inputs)
        if args.typ == "openstack:networking/floatingIp:FloatingIp":
            state["address"] = str(FLOATING_POOL[self._next_ip])
            self._next_ip += 1
        elif args.inputs.get("kind") == GENERATED_SECRET_KIND:
            alphabet = string.ascii_letters + string.digits
            # Drawn from the resource's name, not the order of registrations (which varies with the
            # scheduling of the program's coroutines under load), so two runs of one stack get the
            # same secrets.
            rng = random.Random(args.name)
            body = "".join(rng.choice(alphabet) for _ in range(int(args.inputs["length"])))
            state["value"] = args.inputs.get("prefix", "") + body
        elif args.typ == "openstack:networking/port:Port":
            state["allFixedIps"] = [ip["ipAddress"] for ip in args.inputs.get("fixedIps", [])]
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        self.calls.append((args.token, dict(args.args)))
        if args.token == "openstack:networking/getNetwork:getNetwork":
            return {"id": f"{args.args.get('name')}-id", "name": args.args.get("name"), "external": True}
        if args.token == "openstack:images/getImage:getImage":
            return {"id": "debian-12-image-id", "name": args.args.get("name")}
        return {}


class RecordingMonitor(pulumi_mocks_runtime.MockMonitor):
    """Keeps what the SDK sent with each registration (parent, options), which Mocks does not see."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks
        self.requests: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.requests[response.urn] = request
        return response


LAST_MONITOR: RecordingMonitor | None = None
"""The monitor of the latest `run_program`, even when the program failed (to check nothing was registered)."""


def _config_env(raw: dict[str, Any]) -> str:
    """PULUMI_CONFIG as the Pulumi CLI sets it: every value a string, structured values as JSON."""
    return json.dumps({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()})


def stack_raw_config(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["config"]


def run_program(raw: dict[str, Any], stack: str) -> ProgramRun:
    """Evaluate `visio_infra.cloud.deployment.build_deployment` for one stack config under mocks."""
    from pulumi.runtime import rpc
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    global LAST_MONITOR
    mocks = RecordingMocks()
    monitor = LAST_MONITOR = RecordingMonitor(mocks)
    previous = os.environ.get("PULUMI_CONFIG")
    os.environ["PULUMI_CONFIG"] = _config_env(raw)
    resolved: dict[str, Any] = {}
    secret: set[str] = set()
    try:
        pulumi.runtime.set_mocks(mocks, project="visio", stack=stack, preview=False, monitor=monitor)

        def body() -> None:
            from visio_infra.cloud.deployment import build_deployment
            from visio_infra.cloud.stack_config import load_from_pulumi

            build_deployment(load_from_pulumi())
            root = get_root_resource()
            assert root is not None

            async def resolve() -> None:
                for name, value in root.outputs.items():
                    output = pulumi.Output.from_input(value)
                    resolved[name] = await output.future(with_unknowns=True)
                    if await output.is_secret():
                        secret.add(name)

            _sync_await(resolve())

        _sync_await(run_pulumi_func(body))
    finally:
        if previous is None:
            os.environ.pop("PULUMI_CONFIG", None)
        else:
            os.environ["PULUMI_CONFIG"] = previous

    resources = []
    for urn, request in monitor.requests.items():
        registered = monitor.resources.get(urn)
        resources.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                parent=request.parent,
                custom=request.custom,
                inputs=rpc.deserialize_properties(request.object) if request.object else {},
                outputs=dict(registered.state) if registered is not None else {},
                ignore_changes=list(request.ignoreChanges),
                provider=request.provider,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                protect=bool(request.protect),
                delete_before_replace=bool(request.deleteBeforeReplace),
            )
        )
    return ProgramRun(
        stack=stack, resources=resources, outputs=resolved, secret_outputs=secret, calls=mocks.calls
    )


# --- The stacks the suites run over, each evaluated once per test session ------------------------


def _kind(path: Path) -> str:
    import yaml

    return str(yaml.safe_load(path.read_text(encoding="utf-8"))["config"]["visio:cloud"]["kind"])


def stacks_of_kind(kind: str) -> list[str]:
    return sorted(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for p in shipped_stack_files()
        if _kind(p) == kind
    )


MINISTRY_STACKS = stacks_of_kind("openstack")
LAB_STACKS = stacks_of_kind("lab")
OPENSTACK_STACKS = [*MINISTRY_STACKS, "sample"]
"""Every OpenStack stack file, plus `sample`: variants they do not use (UDP mux port, IPv6 admin CIDR)."""


def sample_stack_raw() -> dict[str, Any]:
    return sample_raw(ports={"sfu_udp_range": None, "sfu_udp_mux_port": 7882})


def raw_of(stack: str) -> dict[str, Any]:
    return sample_stack_raw() if stack == "sample" else stack_raw_config(STACKS_DIR / f"Pulumi.{stack}.yaml")


_RUNS: dict[str, ProgramRun] = {}


def stack_run(stack: str) -> ProgramRun:
    """The program's registrations and outputs for `stack`, evaluated once per session."""
    if stack not in _RUNS:
        _RUNS[stack] = run_program(raw_of(stack), stack)
    return _RUNS[stack]


def main() -> int:
    """`python tests/unit/pulumi_mocks.py [stack...]`: evaluate the program under mocks, print timings (JSON).

    Used by the benchmark script: the time to evaluate the real program for every stack.
    """
    import sys
    import time
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    stacks = sys.argv[1:] or [*MINISTRY_STACKS, *LAB_STACKS]
    started = time.perf_counter()
    report: dict[str, Any] = {"stacks": {}}
    for stack in stacks:
        t0 = time.perf_counter()
        run = run_program(raw_of(stack), stack)
        report["stacks"][stack] = {
            "seconds": round(time.perf_counter() - t0, 3),
            "resources": len(run.resources),
            "outputs": len(run.outputs),
        }
    report["total_seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
