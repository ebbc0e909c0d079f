"""The cloud preflight's judgement (pure): every problem kind, its boundaries, one line per problem,
and `needs` against what the real program registers under mocks for every OpenStack stack."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from typing import Any

import pytest
from pulumi_mocks import OPENSTACK_STACKS, STACKS_DIR, raw_of, sample_config, stack_run

from visio_infra.commands import cloud_check
from visio_infra.commands.cli import main
from visio_infra.model import cloud_fit, cloud_needs
from visio_infra.model.cloud_fit import CloudFacts, FlavorFacts, ImageFacts, Quota
from visio_infra.model.cloud_needs import CloudNeeds
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.security_rules import security_rules
from visio_infra.model.sizing.plan import plan
from visio_infra.model.stack_file import parse_stack_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SOURCE = "stacks/Pulumi.sample.yaml"
PLENTY = 100_000_000


def needs_of(config: StackConfig, source: str = SOURCE) -> CloudNeeds:
    return cloud_needs.needs(config, plan(config), source=source)


def fitting(needs: CloudNeeds, **changes: Any) -> CloudFacts:
    """A cloud that holds the stack with room to spare; `changes` replace fields."""
    encrypted = {v.volume_type for n in needs.nodes for v in n.volumes if v.volume_type}
    facts = CloudFacts(
        flavors={f.name: FlavorFacts(f.vcpu, f.ram_gib * 1024, 40) for f in needs.offer.flavors},
        images={needs.image: ImageFacts(min_disk_gib=2, min_ram_mib=512, virtual_size_bytes=2 * 2**30),
                "Ubuntu 24.04": ImageFacts()},
        external_networks=(needs.external_network, "other-ext"),
        volume_types={**{t: True for t in encrypted}, "plain": False},
        compute_zones=(*needs.zones, "spare-az"),
        volume_zones=(*needs.zones, "spare-az"),
        quotas={name: Quota(PLENTY, 0) for name in cloud_fit._QUOTAS}
        | {f"{kind}_{t}": Quota(PLENTY, 0) for t in encrypted for kind in ("volumes", "gigabytes")}
        | {"server_group_members": Quota(10, 0)},
    )
    return dataclasses.replace(facts, **changes)


def with_quota(facts: CloudFacts, name: str, limit: int, used: int = 0) -> CloudFacts:
    return dataclasses.replace(facts, quotas={**facts.quotas, name: Quota(limit, used)})


def need_of(needs: CloudNeeds, facts: CloudFacts, name: str) -> int:
    return {r.name: r.need for r in cloud_fit.quota_rows(needs, facts)}[name]


@pytest.fixture(scope="module")
def config() -> StackConfig:
    return sample_config()


@pytest.fixture(scope="module")
def needs(config: StackConfig) -> CloudNeeds:
    return needs_of(config)


@pytest.fixture(scope="module")
def image_booted() -> CloudNeeds:
    """The sample booting from the flavors' local disks (no boot volumes)."""
    return needs_of(sample_config(cloud={"boot_from": "image", "local_disk_encrypted": True}))


# --- needs: what the program creates -------------------------------------------------------------


@pytest.mark.parametrize("stack", OPENSTACK_STACKS)
def test_needs_are_what_the_program_registers(stack: str) -> None:
    """Every count the preflight judges, against the real program under mocks."""
    run = stack_run(stack)
    config = parse_stack_config(raw_of(stack), source=stack)
    needs = needs_of(config)
    facts = fitting(needs)
    rows = {r.name: r.need for r in cloud_fit.quota_rows(needs, facts)}

    def count(kind: str) -> int:
        return len(run.of_type(f"openstack:{kind}"))

    instances = run.of_type("openstack:compute/instance:Instance")
    volumes = run.of_type("openstack:blockstorage/volume:Volume")
    assert rows["instances"] == len(instances) == len(needs.nodes)
    registered = sorted(
        (i.inputs["name"], i.inputs["flavorName"], i.inputs.get("availabilityZone")) for i in instances
    )
    assert registered == sorted((n.name, n.flavor, n.zone) for n in needs.nodes)
    offer = needs.offer
    assert rows["cores"] == sum(offer.flavor(i.inputs["flavorName"]).vcpu for i in instances)
    assert rows["ram"] == sum(offer.flavor(i.inputs["flavorName"]).ram_gib * 1024 for i in instances)
    assert rows["volumes"] == len(volumes)
    assert rows["gigabytes"] == sum(v.inputs["size"] for v in volumes)
    typed = Counter(v.inputs.get("volumeType") for v in volumes if v.inputs.get("volumeType"))
    for type_, n in typed.items():
        assert rows[f"volumes_{type_}"] == n
    assert rows["floatingip"] == count("networking/floatingIp:FloatingIp")
    assert rows["security_group"] == count("networking/secGroup:SecGroup")
    groups = count("networking/secGroup:SecGroup")
    assert needs.security_group_rules == count("networking/secGroupRule:SecGroupRule")
    transient = cloud_needs.NEUTRON_DEFAULT_EGRESS_RULES * groups
    assert rows["security_group_rule"] == needs.security_group_rules + transient
    assert rows["network"] == count("networking/network:Network")
    assert rows["subnet"] == count("networking/subnet:Subnet")
    assert rows["router"] == count("networking/router:Router")
    interfaces = count("networking/routerInterface:RouterInterface")
    assert rows["port"] == count("networking/port:Port") + interfaces + cloud_needs.DHCP_PORTS_PER_NETWORK
    server_groups = {f"{g.name}-id": g for g in run.of_type("openstack:compute/serverGroup:ServerGroup")}
    assert rows["server_groups"] == len(server_groups)
    members = Counter(i.inputs["schedulerHints"][0]["group"] for i in instances)
    assert sorted(members.values()) == sorted(needs.group_sizes.values())


def test_needs_follow_sizing_and_the_security_rules(config: StackConfig, needs: CloudNeeds) -> None:
    sizing = plan(config)
    assert dict(needs.flavors) == {r: f for r, f in sizing.flavors.items() if sizing.counts[r]}
    assert needs.security_group_rules == sum(len(r) for r in security_rules(config, sizing.counts).values())
    assert needs.zones == tuple(config.cloud.availability_zones)
    assert needs.source == SOURCE and needs.cloud == "sample" and needs.region == "RegionOne"


def test_booting_from_the_image_needs_no_boot_volume(needs: CloudNeeds, image_booted: CloudNeeds) -> None:
    db = sum(1 for n in needs.nodes if n.role == "db")
    assert need_of(image_booted, fitting(image_booted), "volumes") == db
    assert need_of(needs, fitting(needs), "volumes") == len(needs.nodes) + db


def test_lab_stacks_are_refused() -> None:
    from visio_infra.model.stack_file import load_stack_file

    lab = load_stack_file(STACKS_DIR / "Pulumi.lab.yaml")
    with pytest.raises(TypeError, match="openstack"):
        needs_of(lab)


# --- a cloud that holds the stack ----------------------------------------------------------------


def test_a_cloud_that_fits_has_no_problem(needs: CloudNeeds, image_booted: CloudNeeds) -> None:
    assert cloud_fit.problems(needs, fitting(needs)) == []
    assert cloud_fit.problems(image_booted, fitting(image_booted)) == []


def test_every_shipped_openstack_stack_fits_a_big_enough_cloud() -> None:
    for stack in OPENSTACK_STACKS:
        config = parse_stack_config(raw_of(stack), source=stack)
        needs = needs_of(config, f"stacks/Pulumi.{stack}.yaml")
        facts = fitting(needs)
        biggest = max(needs.group_sizes.values())
        facts = with_quota(facts, "server_group_members", biggest)
        assert cloud_fit.problems(needs, facts) == [], stack


# --- missing things: one line each, naming the file, the field and the fix -------------------------


def test_missing_flavor_names_role_field_and_existing_flavors(needs: CloudNeeds) -> None:
    role, name = "sfu", needs.flavors["sfu"]
    flavors = {k: v for k, v in fitting(needs).flavors.items() if k != name}
    flavors["m1.tiny"] = FlavorFacts(1, 512, 1)  # in the cloud, not in the price table
    [line] = cloud_fit.problems(needs, fitting(needs, flavors=flavors))
    assert line.startswith(f"{SOURCE}: visio:cloud.flavors.{role}: flavor '{name}' (chosen by sizing")
    assert "does not exist in cloud 'sample' (region RegionOne)" in line
    assert "set visio:cloud.flavors.sfu to one of:" in line
    assert "'m1.tiny'" not in line  # only flavors sizing knows (the offer's table) are offered
    assert f"ask the cloud team to create '{name}'" in line


def test_a_flavor_missing_for_two_roles_is_one_line_per_role(needs: CloudNeeds) -> None:
    gone = {needs.flavors["redis"], needs.flavors["bastion"]}
    flavors = {k: v for k, v in fitting(needs).flavors.items() if k not in gone}
    lines = cloud_fit.problems(needs, fitting(needs, flavors=flavors))
    roles = [r for r in ROLES if needs.flavors.get(r) in gone]
    assert len(lines) == len(roles)
    assert all(f"visio:cloud.flavors.{r}:" in line for r, line in zip(roles, lines, strict=True))


def test_no_flavor_of_the_price_table_in_the_cloud_points_at_the_offer(needs: CloudNeeds) -> None:
    facts = fitting(needs, flavors={"m1.small": FlavorFacts(1, 2048, 20)})
    lines = cloud_fit.problems(needs, facts)
    assert len(lines) == len(needs.flavors)
    assert all("check visio:cloud.offer" in line and "'m1.small'" in line for line in lines)


def test_pinned_flavor_is_said_pinned() -> None:
    config = sample_config(cloud={"flavors": {"bastion": "nubo.c2r4"}})
    needs = needs_of(config)
    flavors = {k: v for k, v in fitting(needs).flavors.items() if k != "nubo.c2r4"}
    lines = [line for line in cloud_fit.problems(needs, fitting(needs, flavors=flavors)) if "bastion" in line]
    assert len(lines) == 1 and "flavor 'nubo.c2r4' (pinned)" in lines[0]


def test_flavor_smaller_in_the_cloud_than_in_the_price_table(needs: CloudNeeds) -> None:
    name = needs.flavors["sfu"]
    table = needs.offer.flavor(name)
    for real in (FlavorFacts(table.vcpu - 1, table.ram_gib * 1024, 40),
                 FlavorFacts(table.vcpu, table.ram_gib * 1024 - 1, 40)):
        facts = fitting(needs)
        facts = dataclasses.replace(facts, flavors={**facts.flavors, name: real})
        [line] = cloud_fit.problems(needs, facts)
        assert f"visio:cloud.flavors.sfu: flavor '{name}' has {real.vcpus} vCPU/{real.ram_mib} MiB" in line
        assert "correct the table in visio_infra/model/pricing.py" in line
    # bigger than the table is fine (sizing was conservative)
    facts = fitting(needs)
    bigger = FlavorFacts(table.vcpu + 1, table.ram_gib * 1024 + 1, 40)
    assert (
        cloud_fit.problems(needs, dataclasses.replace(facts, flavors={**facts.flavors, name: bigger})) == []
    )


def test_missing_image_lists_debian_images_first(needs: CloudNeeds) -> None:
    images = {"Ubuntu 24.04": ImageFacts(), "debian-12-genericcloud-20260101": ImageFacts(),
              "AlmaLinux 9": ImageFacts()}
    [line] = cloud_fit.problems(needs, fitting(needs, images=images))
    assert line.startswith(f"{SOURCE}: visio:cloud.image: image '{needs.image}' does not exist")
    assert line.endswith(
        "set visio:cloud.image to one of: 'debian-12-genericcloud-20260101', 'AlmaLinux 9', 'Ubuntu 24.04'"
    )


def test_choices_are_capped(needs: CloudNeeds) -> None:
    images = {f"img-{i:02d}": ImageFacts() for i in range(cloud_fit.SHOWN_CHOICES + 3)}
    [line] = cloud_fit.problems(needs, fitting(needs, images=images))
    assert line.endswith("(and 3 more)") and line.count("'img-") == cloud_fit.SHOWN_CHOICES


def test_image_larger_than_the_boot_volume(needs: CloudNeeds) -> None:
    boot = min(v.size_gib for n in needs.nodes for v in n.volumes if v.from_image)
    fits = fitting(needs, images={needs.image: ImageFacts(min_disk_gib=boot)})
    assert cloud_fit.problems(needs, fits) == []
    for image in (ImageFacts(min_disk_gib=boot + 1), ImageFacts(virtual_size_bytes=boot * 2**30 + 1)):
        [line] = cloud_fit.problems(needs, fitting(needs, images={needs.image: image}))
        assert f"needs a {boot + 1} GiB disk but the boot volumes have {boot} GiB" in line


def test_booting_from_the_image_needs_a_flavor_disk_that_holds_it(image_booted: CloudNeeds) -> None:
    facts = fitting(image_booted, images={image_booted.image: ImageFacts(min_disk_gib=40, min_ram_mib=512)})
    assert cloud_fit.problems(image_booted, facts) == []  # the fitting flavors have 40 GiB disks
    too_big = fitting(image_booted, images={image_booted.image: ImageFacts(min_disk_gib=41)})
    lines = cloud_fit.problems(image_booted, too_big)
    assert len(lines) == len(image_booted.flavors)  # one per role
    assert all("cannot boot image" in line and "at least 41 GiB" in line for line in lines)
    # Nova refuses to boot an image on a flavor without a root disk
    flavors = {k: dataclasses.replace(v, disk_gib=0) for k, v in fitting(image_booted).flavors.items()}
    assert len(cloud_fit.problems(image_booted, fitting(image_booted, flavors=flavors))) == len(
        image_booted.flavors
    )
    # and the image's minimum RAM
    ram = fitting(image_booted, images={image_booted.image: ImageFacts(min_ram_mib=PLENTY)})
    assert len(cloud_fit.problems(image_booted, ram)) == len(image_booted.flavors)


def test_boot_volumes_do_not_need_a_flavor_disk(needs: CloudNeeds) -> None:
    flavors = {k: dataclasses.replace(v, disk_gib=0) for k, v in fitting(needs).flavors.items()}
    assert cloud_fit.problems(needs, fitting(needs, flavors=flavors)) == []


def test_missing_external_network(needs: CloudNeeds) -> None:
    [line] = cloud_fit.problems(needs, fitting(needs, external_networks=("public", "ext-floating")))
    assert line == (
        f"{SOURCE}: visio:cloud.external_network: external network '{needs.external_network}' does not "
        "exist in cloud 'sample' (region RegionOne); set visio:cloud.external_network to one of: "
        "'ext-floating', 'public'"
    )
    [none] = cloud_fit.problems(needs, fitting(needs, external_networks=()))
    assert none.endswith("one of: (none visible to this project)")


def test_missing_encrypted_volume_type_offers_the_encrypted_ones(needs: CloudNeeds) -> None:
    types = {"plain": False, "ceph-luks": True, "nvme-luks": True}
    [line] = cloud_fit.problems(needs, fitting(needs, volume_types=types))
    assert "visio:cloud.encrypted_volume_type: volume type 'ceph-ssd-luks' does not exist" in line
    assert line.endswith("one of the encrypted volume types: 'ceph-luks', 'nvme-luks'")


def test_missing_volume_type_when_encryption_is_unreadable_offers_all(needs: CloudNeeds) -> None:
    [line] = cloud_fit.problems(needs, fitting(needs, volume_types={"plain": None, "fast": None}))
    assert line.endswith("one of the volume types: 'fast', 'plain'")


def test_a_volume_type_without_encryption_is_refused(needs: CloudNeeds) -> None:
    types = {"ceph-ssd-luks": False, "ceph-luks": True}
    [line] = cloud_fit.problems(needs, fitting(needs, volume_types=types))
    assert "volume type 'ceph-ssd-luks' has no encryption" in line and "stored in clear" in line
    assert line.endswith("'ceph-luks'")
    # unknown (these credentials may not read encryption specs): not judged
    assert cloud_fit.problems(needs, fitting(needs, volume_types={"ceph-ssd-luks": None})) == []


def test_missing_zone_is_one_line_naming_both_services(needs: CloudNeeds) -> None:
    zones = ("az1", "az3", "nova")
    [line] = cloud_fit.problems(needs, fitting(needs, compute_zones=zones, volume_zones=zones))
    assert line.startswith(f"{SOURCE}: visio:cloud.availability_zones[1]: availability zone 'az2' does not")
    assert "for servers (Nova zones: 'az1', 'az3', 'nova') nor for volumes (Cinder zones:" in line
    [cinder_only] = cloud_fit.problems(needs, fitting(needs, volume_zones=("az1", "az3")))
    assert "for volumes (Cinder zones: 'az1', 'az3')" in cinder_only and "Nova" not in cinder_only


def test_zones_for_volumes_are_only_judged_when_the_stack_makes_volumes(image_booted: CloudNeeds) -> None:
    no_db = dataclasses.replace(image_booted, nodes=tuple(n for n in image_booted.nodes if not n.volumes))
    assert cloud_fit.problems(no_db, fitting(no_db, volume_zones=())) == []


# --- quotas --------------------------------------------------------------------------------------

QUOTA_NAMES = [n for n in cloud_fit._QUOTAS]


@pytest.mark.parametrize("name", QUOTA_NAMES)
def test_each_quota_exactly_full_fits_and_one_short_is_one_line(needs: CloudNeeds, name: str) -> None:
    base = fitting(needs)
    need = need_of(needs, base, name)
    assert need > 0, name
    used = 7
    assert cloud_fit.problems(needs, with_quota(base, name, need + used, used)) == []
    [line] = cloud_fit.problems(needs, with_quota(base, name, need + used - 1, used))
    service = cloud_fit._QUOTAS[name][0]
    assert line.startswith(f"{SOURCE}: quota {name} ({service}): the stack needs {need} ")
    assert f", {need - 1} free of the project's limit {need + used - 1} ({used} used); " in line
    assert line.endswith(f"raise the project's {service} {name} quota to at least {need + used}")


@pytest.mark.parametrize("name", QUOTA_NAMES)
def test_unlimited_or_unreported_quotas_are_not_judged(needs: CloudNeeds, name: str) -> None:
    base = fitting(needs)
    assert cloud_fit.problems(needs, with_quota(base, name, -1, PLENTY)) == []
    unreported = dataclasses.replace(base, quotas={k: v for k, v in base.quotas.items() if k != name})
    assert cloud_fit.problems(needs, unreported) == []


def test_used_beyond_the_limit_shows_zero_free(needs: CloudNeeds) -> None:
    [line] = cloud_fit.problems(needs, with_quota(fitting(needs), "instances", 10, 12))
    assert ", 0 free of the project's limit 10 (12 used)" in line


def test_cores_and_ram_come_from_the_clouds_flavor_sizes(needs: CloudNeeds) -> None:
    facts = fitting(needs)
    bigger = {
        name: dataclasses.replace(f, vcpus=f.vcpus + 1, ram_mib=f.ram_mib + 100)
        for name, f in facts.flavors.items()
    }
    bigger_facts = dataclasses.replace(facts, flavors=bigger)
    assert need_of(needs, bigger_facts, "cores") == need_of(needs, facts, "cores") + len(needs.nodes)
    assert need_of(needs, bigger_facts, "ram") == need_of(needs, facts, "ram") + 100 * len(needs.nodes)


def test_a_missing_flavor_adds_no_cores(needs: CloudNeeds) -> None:
    """Its size is unknown: the flavor line says what is wrong, the cores line would only guess."""
    name = needs.flavors["sfu"]
    facts = fitting(needs)
    without = dataclasses.replace(facts, flavors={k: v for k, v in facts.flavors.items() if k != name})
    sfu = [n for n in needs.nodes if n.flavor == name]
    assert need_of(needs, without, "cores") == need_of(needs, facts, "cores") - sum(
        facts.flavors[name].vcpus for _ in sfu
    )


def test_security_group_rules_count_neutrons_transient_default_rules(needs: CloudNeeds) -> None:
    base = fitting(needs)
    transient = cloud_needs.NEUTRON_DEFAULT_EGRESS_RULES * needs.security_groups
    peak = needs.security_group_rules + transient
    assert cloud_fit.problems(needs, with_quota(base, "security_group_rule", peak)) == []
    [line] = cloud_fit.problems(needs, with_quota(base, "security_group_rule", peak - 1))
    assert f"needs {peak} security group rules ({needs.security_group_rules} declared + {transient} " in line


def test_per_type_volume_quotas(needs: CloudNeeds) -> None:
    """Every volume is on the encrypted type (boot volumes hold the nodes' secrets): its per-type
    quotas must hold all of them."""
    base = fitting(needs)
    volumes = [v for n in needs.nodes for v in n.volumes]
    assert {v.volume_type for v in volumes} == {"ceph-ssd-luks"}
    total = sum(v.size_gib for v in volumes)
    facts = with_quota(base, "volumes_ceph-ssd-luks", len(volumes))
    facts = with_quota(facts, "gigabytes_ceph-ssd-luks", total)
    assert cloud_fit.problems(needs, facts) == []
    [line] = cloud_fit.problems(needs, with_quota(facts, "gigabytes_ceph-ssd-luks", total - 1))
    assert line.startswith(f"{SOURCE}: quota gigabytes_ceph-ssd-luks (Cinder): the stack needs ")
    assert f"needs {total} GiB" in line
    assert "GiB of type 'ceph-ssd-luks'" in line
    [count] = cloud_fit.problems(needs, with_quota(facts, "volumes_ceph-ssd-luks", len(volumes) - 1))
    assert f"needs {len(volumes)} volumes of type 'ceph-ssd-luks'" in count


def test_server_group_members_per_group(needs: CloudNeeds) -> None:
    largest = max(needs.group_sizes.values())
    base = fitting(needs)
    assert cloud_fit.problems(needs, with_quota(base, "server_group_members", largest)) == []
    assert cloud_fit.problems(needs, with_quota(base, "server_group_members", -1)) == []
    lines = cloud_fit.problems(needs, with_quota(base, "server_group_members", largest - 1))
    too_big = {role for (role, _), size in needs.group_sizes.items() if size > largest - 1}
    assert len(lines) == len(too_big)
    line = lines[0]
    assert line.startswith(f"{SOURCE}: quota server_group_members (Nova): the ")
    assert f"exceed the project's limit of {largest - 1} per group" in line
    assert f"set visio:cloud.server_group_max_members to {largest - 1}" in line
    assert f"raise server_group_members to at least {largest}" in line


def test_server_group_members_fix_counts_the_groups_it_would_make() -> None:
    config = sample_config(sizing={"nodes": {"sfu": 12, "turn": 3, "db": 3, "redis": 3, "bastion": 1}})
    needs = needs_of(config)
    assert sorted(n for (r, _), n in needs.group_sizes.items() if r == "sfu") == [2, 10]
    [line] = cloud_fit.problems(needs, with_quota(fitting(needs), "server_group_members", 4))
    # with groups of 4: sfu 3, turn 1, db 1, redis 1, bastion 1, monitoring 1
    assert "the 12 sfu nodes' anti-affinity groups of up to 10 members" in line
    assert "server_group_max_members to 4 (8 groups in all)" in line


# --- one line per problem, all at once -----------------------------------------------------------


def test_every_problem_at_once_is_one_line_each(needs: CloudNeeds) -> None:
    facts = fitting(
        needs,
        flavors={k: v for k, v in fitting(needs).flavors.items() if k != needs.flavors["sfu"]},
        images={"other": ImageFacts()},
        external_networks=("public",),
        volume_types={"plain": False},
        compute_zones=("az1", "az2"),
        volume_zones=("az1", "az2"),
    )
    facts = with_quota(facts, "instances", 1)
    facts = with_quota(facts, "floatingip", 1)
    facts = with_quota(facts, "server_group_members", 1)
    lines = cloud_fit.problems(needs, facts)
    expected = [
        "visio:cloud.flavors.sfu:", "visio:cloud.image:", "visio:cloud.external_network:",
        "visio:cloud.encrypted_volume_type:", "visio:cloud.availability_zones[2]:",
    ]
    groups = {role for (role, _), size in needs.group_sizes.items() if size > 1}
    expected += ["quota server_group_members"] * len(groups) + ["quota instances", "quota floatingip"]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, what in zip(lines, expected, strict=True):
        assert line.startswith(f"{SOURCE}: {what}"), line
        assert "\n" not in line


def test_unread_parts_are_not_judged_but_said(needs: CloudNeeds) -> None:
    facts = CloudFacts(unread=("flavors: ForbiddenException: 403",))
    assert cloud_fit.problems(needs, facts) == []
    assert cloud_fit.quota_rows(needs, facts)[0].quota is None
    assert cloud_fit.not_judged(needs, facts) == ["flavors: ForbiddenException: 403"]


def test_unreadable_encryption_of_the_wanted_type_is_said(needs: CloudNeeds) -> None:
    assert cloud_fit.not_judged(needs, fitting(needs)) == []
    unknown = fitting(needs, volume_types={"ceph-ssd-luks": None, "plain": None})
    assert cloud_fit.problems(needs, unknown) == []
    [note] = cloud_fit.not_judged(needs, unknown)
    assert note.startswith("encryption of volume type 'ceph-ssd-luks': these credentials may not read")
    assert note.endswith("ask the cloud team to confirm 'ceph-ssd-luks' encrypts at rest")
    # a missing type is a problem, not a note
    assert cloud_fit.not_judged(needs, fitting(needs, volume_types={"plain": None})) == []


# --- a stack that is already (partly) deployed ---------------------------------------------------


def test_existing_servers_need_nothing_new(needs: CloudNeeds) -> None:
    facts = fitting(needs, existing_servers=frozenset(n.name for n in needs.nodes) | {"someone-else"})
    rows = {r.name: r.need for r in cloud_fit.quota_rows(needs, facts)}
    assert all(need == 0 for need in rows.values()), rows
    assert cloud_fit.problems(needs, with_quota(facts, "instances", 0)) == []


def test_growing_a_stack_judges_only_the_new_nodes() -> None:
    small = needs_of(sample_config())
    assert sum(1 for n in small.nodes if n.role == "sfu") == 10
    counts = {"sfu": 12, "turn": 3, "db": 3, "redis": 3, "bastion": 1}
    grown = needs_of(sample_config(sizing={"nodes": counts}))
    facts = fitting(grown, existing_servers=frozenset(n.name for n in small.nodes))
    rows = {r.name: r.need for r in cloud_fit.quota_rows(grown, facts)}
    sfu = grown.offer.flavor(grown.flavors["sfu"])
    assert rows["instances"] == 2 and rows["cores"] == 2 * sfu.vcpu
    assert rows["floatingip"] == 2 and rows["port"] == 2 and rows["volumes"] == 2
    assert rows["server_groups"] == 1  # sfu group 2; group 1 exists with the first ten
    assert rows["security_group"] == rows["security_group_rule"] == rows["network"] == rows["router"] == 0
    assert cloud_fit.summary(grown, facts).startswith(
        "21 of the stack's 23 servers already exist; judged the 2 to create"
    )


# --- reading the cloud: the payloads' mapping (no cloud here) ------------------------------------


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def json(self) -> dict[str, Any]:
        return self.body


class _Service:
    def __init__(self, bodies: dict[str, dict[str, Any]]) -> None:
        self.bodies = bodies
        self.calls: list[tuple[str, Any]] = []

    def get(self, path: str, params: Any = None) -> _Response:
        self.calls.append((path, params))
        return _Response(self.bodies[path])

    def security_groups(self, **query: Any) -> list[Any]:
        self.calls.append(("security_groups", query))
        return []


class _Conn:
    current_project_id = "p1"

    def __init__(self) -> None:
        self.compute = _Service({"/limits": {"limits": {"absolute": {
            "maxTotalInstances": 10, "totalInstancesUsed": 3, "maxTotalCores": 20, "totalCoresUsed": 6,
            "maxTotalRAMSize": 51200, "totalRAMUsed": 4096, "maxServerGroups": 10,
            "totalServerGroupsUsed": 1, "maxServerGroupMembers": 10, "maxTotalKeypairs": 100,
        }}}})
        self.block_storage = _Service({"/os-quota-sets/p1": {"quota_set": {
            "id": "p1", "volumes": {"limit": 10, "in_use": 2, "reserved": 1, "allocated": 0},
            "gigabytes": {"limit": 1000, "in_use": 40, "reserved": 0, "allocated": 0},
            "volumes_encrypted": {"limit": -1, "in_use": 2, "reserved": 0, "allocated": 0},
            "backups": {"limit": 10, "in_use": 0, "reserved": 0, "allocated": 0},
        }}})
        self.network = _Service({"/quotas/p1/details": {"quota": {
            "floatingip": {"limit": 50, "used": 6, "reserved": 0},
            "security_group_rule": {"limit": 100, "used": 60, "reserved": 2},
            "rbac_policy": {"limit": 10, "used": 0, "reserved": 0},
        }}})


def test_quota_payloads_map_to_limits_and_usage() -> None:
    conn = _Conn()
    nova = cloud_check._nova_quotas(conn)
    assert nova["instances"] == Quota(10, 3) and nova["cores"] == Quota(20, 6)
    assert nova["ram"] == Quota(51200, 4096)
    assert nova["server_groups"] == Quota(10, 1) and nova["server_group_members"].limit == 10
    cinder = cloud_check._cinder_quotas(conn)
    assert cinder == {
        "volumes": Quota(10, 3), "gigabytes": Quota(1000, 40), "volumes_encrypted": Quota(-1, 2)
    }
    assert conn.block_storage.calls == [("/os-quota-sets/p1", {"usage": "True"})]
    neutron = cloud_check._neutron_quotas(conn)
    assert neutron == {"floatingip": Quota(50, 6), "security_group_rule": Quota(100, 62)}
    # the security groups are listed first, so Neutron's own `default` group is in the usage
    assert conn.network.calls[0][0] == "security_groups"


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def sample_file(tmp_path: Any) -> Any:
    import yaml

    path = tmp_path / "Pulumi.sample.yaml"
    path.write_text(yaml.safe_dump({"config": raw_of("sample")}), encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_check_cloud_passes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                sample_file: Any) -> None:
    config = parse_stack_config(raw_of("sample"), source="x")
    monkeypatch.setattr(cloud_check, "read_cloud", lambda cloud: fitting(needs_of(config)))
    code, out, err = run_cli(capsys, str(sample_file), "--check-cloud")
    assert code == 0, err
    assert err == ""
    assert "Visio plan for stack 'sample'" in out  # the plan itself comes first
    assert re.search(r"Cloud check against cloud 'sample' \(region RegionOne\): \d+\.\d\d s, read-only", out)
    assert re.search(r"^  instances\s+Nova\s+\d+\s+0\s+100000000\s+100000000$", out, re.M)
    assert "The cloud can hold the stack:" in out


def test_cli_check_cloud_fails_with_one_line_per_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sample_file: Any
) -> None:
    config = parse_stack_config(raw_of("sample"), source="x")
    needs = needs_of(config)
    facts = with_quota(fitting(needs, images={}), "instances", 2, 1)
    monkeypatch.setattr(cloud_check, "read_cloud", lambda cloud: facts)
    code, out, err = run_cli(capsys, str(sample_file), "--check-cloud")
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{sample_file}: ") for line in lines)  # the file, as given
    assert "visio:cloud.image" in lines[0] and "quota instances" in lines[1]
    assert re.search(r"^  instances .*<- exceeded$", out, re.M)
    assert "2 problem(s), one line each on stderr" in out


def test_cli_check_cloud_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              sample_file: Any) -> None:
    config = parse_stack_config(raw_of("sample"), source="x")
    monkeypatch.setattr(
        cloud_check, "read_cloud", lambda cloud: with_quota(fitting(needs_of(config)), "cores", 1)
    )
    code, out, err = run_cli(capsys, str(sample_file), "--check-cloud", "--format", "json")
    assert code == 1
    data = json.loads(out)
    check = data["cloud_check"]
    assert data["stack"] == "sample" and check["fits"] is False
    assert check["problems"] == err.splitlines() and len(check["problems"]) == 1
    cores = next(q for q in check["quotas"] if q["name"] == "cores")
    assert cores["limit"] == 1 and cores["free"] == 1 and cores["need"] > 1
    assert isinstance(check["seconds"], float)


def test_cli_unreadable_cloud_exits_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                      sample_file: Any) -> None:
    def refuse(cloud: Any) -> CloudFacts:
        raise cloud_check.CloudReadError("Unauthorized: The request you have made requires authentication.")

    monkeypatch.setattr(cloud_check, "read_cloud", refuse)
    code, _, err = run_cli(capsys, str(sample_file), "--check-cloud")
    assert code == 3
    assert err.strip() == (
        f"{sample_file}: could not read cloud 'sample' (region RegionOne): Unauthorized: The request you "
        "have made requires authentication.; nothing was created"
    )


def test_cli_a_cloud_entry_missing_from_clouds_yaml_is_unreadable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sample_file: Any, tmp_path: Any
) -> None:
    """The real reader, with no clouds.yaml holding the stack's entry: exit 3, no traceback."""
    empty = tmp_path / "clouds.yaml"
    empty.write_text("clouds: {}\n", encoding="utf-8")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(empty))
    for name in ("OS_CLOUD", "OS_AUTH_URL", "OS_PASSWORD", "OS_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./clouds.yaml either
    code, _, err = run_cli(capsys, str(sample_file), "--check-cloud")
    assert code == 3, err
    assert "could not read cloud 'sample'" in err and "Traceback" not in err


def test_cli_lab_has_no_cloud_to_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "lab", "--check-cloud")
    assert code == 2
    assert "the lab has none" in err
