"""What the cloud holds, created once at build time inside the machine (openstacksdk, one process:
much faster than one `openstack` CLI call per object).

  provision.py identity   service project/role/users, catalog, project visio-acceptance and its
                          `member` user, /etc/openstack/clouds.yaml (0600)
  provision.py content    image `Debian 12`, flavors, volume types `encrypted` and `plain`, external
                          network `public`; quotas are left at their defaults on purpose
  provision.py selfcheck  an `encrypted` volume created by the member user becomes available

Passwords come from the environment (set by setup.sh), never from argv.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ENV = os.environ
IP = ENV["OSC_IP"]
REGION = ENV["OSC_REGION"]
KEYSTONE = f"http://{IP}:5000/v3"
CLOUDS = "/etc/openstack/clouds.yaml"
ADMIN_CLOUD = f"{ENV['OSC_PROJECT']}-admin"
SERVICES = {  # user: (service type, service name, port, path)
    "glance": ("image", "glance", 9292, ""),
    "placement": ("placement", "placement", 8778, ""),
    "nova": ("compute", "nova", 8774, "/v2.1"),
    "neutron": ("network", "neutron", 9696, ""),
    "cinder": ("volumev3", "cinderv3", 8776, "/v3/%(project_id)s"),
}
FLAVORS = {"a1.small": (1, 2048, 10), "a1.medium": (2, 4096, 20)}  # vCPU, MB RAM, GB disk
ENCRYPTION = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def say(message: str) -> None:
    print(f"[provision] {message}", flush=True)


def wait_http(url: str, timeout: float = 300) -> None:
    """Until `url` answers at all (any HTTP status): services were just started."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=10).close()  # noqa: S310 (http://<cloud address> only)
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"{url} does not answer after {timeout:.0f}s: {exc}")
            time.sleep(1)


def retry(what: str, call, *args, **kwargs):
    """call(*args, **kwargs), retried for 300 s while a just-started service answers 5xx or drops
    the connection."""
    import openstack.exceptions

    deadline = time.monotonic() + 300
    while True:
        try:
            return call(*args, **kwargs)
        except (openstack.exceptions.HttpException, ConnectionError) as exc:
            status = getattr(exc, "status_code", None)
            if (status is not None and status < 500) or time.monotonic() > deadline:
                raise
            say(f"{what}: {exc.__class__.__name__} {status or ''}; retrying")
            time.sleep(2)


def connect(cloud: str):
    import openstack

    return openstack.connect(cloud=cloud)


def write_clouds() -> None:
    def entry(user: str, project: str, password: str) -> dict:
        return {
            "auth": {
                "auth_url": KEYSTONE,
                "username": user,
                "password": password,
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": REGION,
            "interface": "public",
            "identity_api_version": 3,
        }

    clouds = {
        "clouds": {
            ENV["OSC_PROJECT"]: entry(ENV["OSC_USER"], ENV["OSC_PROJECT"], ENV["OSC_MEMBER_PASSWORD"]),
            ADMIN_CLOUD: entry("admin", "admin", ENV["OSC_ADMIN_PASSWORD"]),
        }
    }
    os.makedirs(os.path.dirname(CLOUDS), exist_ok=True)
    fd = os.open(CLOUDS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Written by scripts/openstack-cloud/provision.py: the test cloud's two users.\n")
        yaml.safe_dump(clouds, out, default_flow_style=False, sort_keys=False)
    os.chmod(CLOUDS, 0o600)


def identity() -> None:
    write_clouds()
    wait_http(KEYSTONE, 120)
    conn = connect(ADMIN_CLOUD)
    ident = conn.identity
    domain = "default"
    service_project = ident.find_project("service", domain_id=domain) or ident.create_project(
        name="service", domain_id=domain, description="OpenStack service users"
    )
    roles = {name: ident.find_role(name) for name in ("admin", "member", "service")}
    # Zed's bootstrap creates no `service` role; the OSSA-2023-003 fix in Debian's Cinder requires a
    # service token (from a user with it) to delete an attachment, i.e. to detach a volume.
    if roles["service"] is None:
        roles["service"] = ident.create_role(name="service")
    for user_name, (stype, sname, port, path) in SERVICES.items():
        password = ENV[f"OSC_PASSWORD_{user_name.upper()}"]
        user = ident.find_user(user_name, domain_id=domain) or ident.create_user(
            name=user_name, domain_id=domain, password=password
        )
        for role in ("admin", "service"):
            ident.assign_project_role_to_user(service_project, user, roles[role])
        service = ident.find_service(sname) or ident.create_service(name=sname, type=stype)
        for interface in ("public", "internal", "admin"):
            ident.create_endpoint(
                service_id=service.id,
                interface=interface,
                url=f"http://{IP}:{port}{path}",
                region_id=REGION,
            )
    project = ident.find_project(ENV["OSC_PROJECT"], domain_id=domain) or ident.create_project(
        name=ENV["OSC_PROJECT"], domain_id=domain, description="Visio acceptance tests (default quotas)"
    )
    member = ident.find_user(ENV["OSC_USER"], domain_id=domain) or ident.create_user(
        name=ENV["OSC_USER"],
        domain_id=domain,
        password=ENV["OSC_MEMBER_PASSWORD"],
        default_project_id=project.id,
    )
    ident.assign_project_role_to_user(project, member, roles["member"])
    say(f"catalog: {len(SERVICES) + 1} services; project {project.name} with a member user")


def content() -> None:
    for _user, (_stype, _sname, port, _path) in SERVICES.items():
        wait_http(f"http://{IP}:{port}/")
    conn = connect(ADMIN_CLOUD)

    if not conn.image.find_image("Debian 12"):
        with tempfile.NamedTemporaryFile(suffix=".raw") as raw:
            raw.truncate(1 << 20)  # the fake driver boots nothing: any raw file is an image
            raw.flush()
            retry(
                "image",
                conn.create_image,
                "Debian 12",
                filename=raw.name,
                disk_format="raw",
                container_format="bare",
                visibility="public",
                os_distro="debian",
                os_version="12",
                wait=True,
            )
    for name, (vcpus, ram, disk) in FLAVORS.items():
        if not conn.compute.find_flavor(name):
            retry("flavor", conn.compute.create_flavor, name=name, vcpus=vcpus, ram=ram, disk=disk,
                  is_public=True)

    storage = conn.block_storage
    for name in ("encrypted", "plain"):
        if not storage.find_type(name):
            specs = {"volume_backend_name": "fake"}
            vtype = retry("volume type", storage.create_type, name=name, extra_specs=specs)
            if name == "encrypted":
                storage.create_type_encryption(vtype, **ENCRYPTION)

    net = conn.network
    public = net.find_network("public") or retry(
        "network",
        net.create_network,
        name="public",
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="external",
    )
    if not list(net.subnets(network_id=public.id)):
        first, last = ENV["OSC_PUBLIC_POOL"].split("-")
        net.create_subnet(
            name="public-subnet",
            network_id=public.id,
            ip_version=4,
            cidr=ENV["OSC_PUBLIC_CIDR"],
            gateway_ip=ENV["OSC_PUBLIC_GATEWAY"],
            is_dhcp_enabled=False,
            allocation_pools=[{"start": first, "end": last}],
        )
    say("content: image 'Debian 12', flavors a1.small a1.medium, volume types encrypted plain, "
        "network public")


def selfcheck() -> None:
    conn = connect(ENV["OSC_PROJECT"])
    storage = conn.block_storage
    started = time.monotonic()
    volume = storage.create_volume(name="visio-selfcheck", size=1, volume_type="encrypted")
    volume = storage.wait_for_status(volume, "available", failures=["error"], interval=1, wait=180)
    if not volume.is_encrypted:
        sys.exit("self-check: a volume of type `encrypted` is not encrypted")
    storage.delete_volume(volume)
    storage.wait_for_delete(volume, interval=1, wait=180)
    say(f"self-check: encrypted volume available and deleted in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    {"identity": identity, "content": content, "selfcheck": selfcheck}[sys.argv[1]]()
