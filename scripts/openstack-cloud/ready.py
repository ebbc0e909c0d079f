"""Is the cloud usable? Run inside the machine (standard library + PyYAML, so it starts fast).

  ready.py --wait [--timeout S]   poll every second until every check passes (exit 1 on timeout,
                                  naming what is not ready); maps new compute hosts on the way
  ready.py --summary              one look, one line per service (scripts/openstack-cloud.sh status)

Usable means: Keystone issues tokens to the admin and the acceptance member; the 4 nova-compute
services report up, are mapped to cell1 and have placement resource providers with capacity; the
conductor and scheduler are up; every Neutron agent is alive (a linuxbridge agent per compute host,
DHCP, L3); cinder-scheduler and cinder-volume are up and the scheduler knows the `fake` pool;
Glance lists the `Debian 12` image.
The build ages every heartbeat in the cached root, so "up" here always means a fresh report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def cloud_env() -> dict[str, str]:
    values = {}
    with open(os.path.join(HERE, "cloud.env"), encoding="utf-8") as env:
        for line in env:
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                key, value = line.split("=", 1)
                values[key] = value.strip()
    return values


ENV = cloud_env()
MACHINE = ENV["OSC_MACHINE"]
HOSTS = [MACHINE] + [f"{MACHINE}-{i}" for i in range(2, int(ENV["OSC_FAKE_HOSTS"]) + 2)]


class NotReady(Exception):
    pass


def http(method: str, url: str, token: str | None = None, body: dict | None = None, headers=None):
    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310 (http://<cloud> only)
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    if token:
        request.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 (http://<cloud> only)
            return response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise NotReady(f"{method} {url}: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise NotReady(f"{method} {url}: {exc}") from None


def token(cloud: dict) -> tuple[str, list]:
    auth = cloud["auth"]
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": auth["username"],
                        "domain": {"name": auth["user_domain_name"]},
                        "password": auth["password"],
                    }
                },
            },
            "scope": {
                "project": {"name": auth["project_name"], "domain": {"name": auth["project_domain_name"]}}
            },
        }
    }
    headers, answer = http("POST", auth["auth_url"] + "/auth/tokens", body=body)
    return headers["X-Subject-Token"], answer["token"].get("catalog", [])


def endpoints(catalog: list) -> dict[str, str]:
    return {
        service["type"]: next(e["url"] for e in service["endpoints"] if e["interface"] == "public")
        for service in catalog
        if service["endpoints"]
    }


def mapped_hosts() -> set[str]:
    out = subprocess.run(
        ["mysql", "-N", "-B", "-e", "SELECT host FROM nova_api.host_mappings"],
        capture_output=True, text=True, check=False,
    )
    return set(out.stdout.split())


class Checker:
    def __init__(self) -> None:
        with open("/etc/openstack/clouds.yaml", encoding="utf-8") as f:
            self.clouds = yaml.safe_load(f)["clouds"]
        self.last_discover = 0.0
        self.cinder_up_since: float | None = None
        self.last_volume_restart = 0.0
        self.admin: tuple[str, dict[str, str]] | None = None

    def look(self, discover: bool) -> dict[str, tuple[bool, str]]:
        """One look at every service: {name: (ready, detail)}."""
        result: dict[str, tuple[bool, str]] = {}

        def check(name, probe):
            try:
                result[name] = probe()
            except NotReady as exc:
                result[name] = (False, str(exc))
                if "HTTP 401" in str(exc):
                    self.admin = None

        state: dict = {}

        def keystone():
            # Logged in once (each login is a password hash on a busy machine); a refused token
            # below (401) logs in again.
            if self.admin is None:
                admin = self.clouds[f"{ENV['OSC_PROJECT']}-admin"]
                tok, catalog = token(admin)
                token(self.clouds[ENV["OSC_PROJECT"]])
                self.admin = tok, endpoints(catalog)
            state["token"], state["urls"] = self.admin
            return True, f"tokens for admin and {ENV['OSC_USER']}"

        check("keystone", keystone)
        if not result["keystone"][0]:
            return result
        tok, urls = state["token"], state["urls"]

        def nova():
            services = http("GET", urls["compute"] + "/os-services", tok)[1]["services"]
            up = {
                (s["binary"], s["host"]) for s in services if s["state"] == "up" and s["status"] == "enabled"
            }
            computes = sorted(h for b, h in up if b == "nova-compute")
            missing = [b for b in ("nova-conductor", "nova-scheduler") if not any(x == b for x, _ in up)]
            mapped = mapped_hosts()
            unmapped = [h for h in computes if h not in mapped]
            if unmapped and discover and time.monotonic() - self.last_discover > 5:
                self.last_discover = time.monotonic()
                subprocess.run(
                    ["su", "-s", "/bin/sh", "-c", "nova-manage cell_v2 discover_hosts", "nova"],
                    capture_output=True, check=False,
                )
                mapped = mapped_hosts()
            placed = http(
                "GET",
                urls["placement"] + "/resource_providers?resources=VCPU:1,MEMORY_MB:4096,DISK_GB:20",
                tok,
                headers={"OpenStack-API-Version": "placement 1.4"},
            )[1]["resource_providers"]
            in_placement = {p["name"] for p in placed}
            ok_hosts = [h for h in HOSTS if h in computes and h in mapped and h in in_placement]
            detail = (
                f"compute up {len(computes)}/{len(HOSTS)}, mapped {len(set(HOSTS) & mapped)}/{len(HOSTS)}, "
                f"in placement {len(set(HOSTS) & in_placement)}/{len(HOSTS)}"
            )
            if missing:
                detail += f"; not up: {', '.join(missing)}"
            return len(ok_hosts) == len(HOSTS) and not missing, detail

        def neutron():
            agents = http("GET", urls["network"] + "/v2.0/agents", tok)[1]["agents"]
            alive = {(a["agent_type"], a["host"]) for a in agents if a["alive"] and a["admin_state_up"]}
            wanted = {("Linux bridge agent", h) for h in HOSTS}
            wanted |= {("DHCP agent", MACHINE), ("L3 agent", MACHINE)}
            dead = sorted(f"{a['agent_type']}@{a['host']}" for a in agents if not a["alive"])
            detail = f"agents alive {len(wanted & alive)}/{len(wanted)}"
            if dead:
                detail += f"; not alive: {', '.join(dead)}"
            return wanted <= alive and not dead, detail

        def cinder():
            services = http("GET", urls["volumev3"] + "/os-services", tok)[1]["services"]
            up = {s["binary"] for s in services if s["state"] == "up" and s["status"] == "enabled"}
            wanted = {"cinder-scheduler", "cinder-volume"}
            if not wanted <= up:
                self.cinder_up_since = None
                return False, f"{', '.join(sorted(wanted & up)) or 'nothing'} up"
            # Up is not enough: the scheduler places volumes on the pools whose capabilities it has
            # received, by fanout, from cinder-volume at its start (or every 60 s). When both start
            # at once that first message can be lost: volumes then fail with NoValidBackend for a
            # minute. A restarted cinder-volume publishes again to the scheduler now listening.
            pools = http("GET", urls["volumev3"] + "/scheduler-stats/get_pools", tok)[1]["pools"]
            if any(p["name"].startswith(f"{MACHINE}@fake") for p in pools):
                return True, "scheduler, volume up; pool fake known to the scheduler"
            now = time.monotonic()
            self.cinder_up_since = self.cinder_up_since or now
            if discover and now - self.cinder_up_since > 15 and now - self.last_volume_restart > 60:
                self.last_volume_restart = now
                subprocess.run(["systemctl", "restart", "cinder-volume"], capture_output=True, check=False)
                return False, "scheduler, volume up; no pool known to the scheduler: cinder-volume restarted"
            return False, "scheduler, volume up; no pool known to the scheduler yet"

        def glance():
            images = http("GET", urls["image"] + "/v2/images?name=Debian%2012", tok)[1]["images"]
            active = [i for i in images if i["status"] == "active"]
            return bool(active), "image 'Debian 12' active" if active else "no active image 'Debian 12'"

        for name, probe in (("nova", nova), ("neutron", neutron), ("cinder", cinder), ("glance", glance)):
            check(name, probe)
        return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    checker = Checker()
    if args.summary:
        result = checker.look(discover=False)
        for name, (ok, detail) in result.items():
            print(f"  {name:9} {'ok' if ok else 'NOT READY'}: {detail}")
        return 0 if len(result) == 5 and all(ok for ok, _detail in result.values()) else 1
    started = time.monotonic()
    shown = ""
    while True:
        result = checker.look(discover=True)
        waiting = {name: detail for name, (ok, detail) in result.items() if not ok}
        if len(result) == 5 and not waiting:
            details = "; ".join(f"{name}: {detail}" for name, (_ok, detail) in result.items())
            print(f"[ready +{time.monotonic() - started:.0f}s] {details}", flush=True)
            return 0
        line = "; ".join(f"{name}: {detail}" for name, detail in waiting.items())
        if line != shown:
            print(f"[ready +{time.monotonic() - started:.0f}s] waiting for {line}", flush=True)
            shown = line
        if time.monotonic() - started > args.timeout:
            print(f"not ready after {args.timeout:.0f}s: {line}", file=sys.stderr)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
