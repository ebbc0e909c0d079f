"""Flavor price tables, one per cloud offer, used to choose flavors and to estimate the monthly cost.

Every figure here is an ESTIMATE, not a quote. Private clouds (the Intérieur's and the DGFiP's Nubo)
publish no tariff: their tables are internal charge-back estimates built from typical amortised
hardware costs (about EUR 10-12 per vCPU-month and EUR 2-3 per GiB-month of RAM, 10/25 Gbit/s hosts
with per-VM bandwidth limits). The public SecNumCloud region is estimated from the OVHcloud Public
Cloud list prices of the b3/c3 ranges (2024-2025, excluding VAT) plus a ~30 % SecNumCloud premium,
with the public bandwidth guaranteed per flavor in those ranges. Replace them with the ministry's
actual contract figures before taking a budget decision: `visio plan` only needs this table's shape.

Pure data: no I/O, no Pulumi, imported by the config validation and by sizing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavor:
    """One OpenStack flavor as sizing sees it."""

    name: str
    vcpu: int
    ram_gib: int
    nic_gbps: float
    """Bandwidth a VM of this flavor can sustain, per direction (provider QoS or host NIC share)."""
    eur_month: float
    """Estimated price, EUR per month excluding VAT, running 24/7."""


@dataclass(frozen=True)
class Offer:
    """A cloud offer: its flavors plus the per-node extras a deployment pays for."""

    name: str
    description: str
    flavors: tuple[Flavor, ...]
    block_eur_per_gib_month: float
    """Block storage (boot volumes, DB data volumes), EUR per GiB-month."""
    floating_ip_eur_month: float
    """One public (floating) IPv4 address, EUR per month."""
    source: str
    """Where the figures come from."""

    def flavor(self, name: str) -> Flavor:
        for flavor in self.flavors:
            if flavor.name == name:
                return flavor
        raise KeyError(name)

    @property
    def flavor_names(self) -> list[str]:
        return [f.name for f in self.flavors]


BOOT_VOLUME_GIB = 20
"""Boot volume of every node (Debian 12 + LiveKit/coturn/PostgreSQL binaries + logs), unless the
stack boots from the flavor's local disk (`cloud.boot_from: image`)."""

_PRIVATE = "internal charge-back estimate (no public tariff); ~EUR 10/vCPU-month + ~EUR 2.5/GiB-month"

OFFERS: dict[str, Offer] = {
    "interieur-pi": Offer(
        name="interieur-pi",
        description="Ministère de l'Intérieur private OpenStack cloud (DNUM)",
        # General-purpose (c*.m = 2 GiB/vCPU) and memory (4 GiB/vCPU) flavors; 10 Gbit/s hosts with a
        # per-VM bandwidth limit that grows with the flavor.
        flavors=(
            Flavor("pi.c2.m4", 2, 4, 2.0, 30.0),
            Flavor("pi.c4.m8", 4, 8, 4.0, 60.0),
            Flavor("pi.c4.m16", 4, 16, 4.0, 80.0),
            Flavor("pi.c8.m16", 8, 16, 8.0, 120.0),
            Flavor("pi.c8.m32", 8, 32, 8.0, 160.0),
            Flavor("pi.c16.m32", 16, 32, 10.0, 240.0),
            Flavor("pi.c16.m64", 16, 64, 10.0, 320.0),
            Flavor("pi.c32.m64", 32, 64, 10.0, 480.0),
        ),
        block_eur_per_gib_month=0.05,
        floating_ip_eur_month=0.0,  # addresses from the ministry's own public range
        source=_PRIVATE,
    ),
    "nubo": Offer(
        name="nubo",
        description="Nubo, the DGFiP's OpenStack cloud (ministère de l'Économie et des Finances)",
        # Nubo runs 25 Gbit/s hosts; smaller flavors get a 2.5 Gbit/s per-VM limit.
        flavors=(
            Flavor("nubo.c2r4", 2, 4, 2.5, 28.0),
            Flavor("nubo.c4r8", 4, 8, 2.5, 56.0),
            Flavor("nubo.c4r16", 4, 16, 2.5, 76.0),
            Flavor("nubo.c8r16", 8, 16, 10.0, 112.0),
            Flavor("nubo.c8r32", 8, 32, 10.0, 150.0),
            Flavor("nubo.c16r32", 16, 32, 10.0, 224.0),
            Flavor("nubo.c16r64", 16, 64, 10.0, 300.0),
            Flavor("nubo.c24r48", 24, 48, 10.0, 336.0),
        ),
        block_eur_per_gib_month=0.05,
        floating_ip_eur_month=0.0,
        source=_PRIVATE,
    ),
    "ovh-secnumcloud": Offer(
        name="ovh-secnumcloud",
        description="OVHcloud public OpenStack region qualified SecNumCloud",
        # c3 = compute-optimised (2 GiB/vCPU), b3 = general purpose (4 GiB/vCPU); bandwidth is the
        # public bandwidth guaranteed for each flavor of those ranges.
        flavors=(
            Flavor("c3-4", 2, 4, 0.25, 35.0),
            Flavor("c3-8", 4, 8, 0.5, 68.0),
            Flavor("c3-16", 8, 16, 1.0, 135.0),
            Flavor("c3-32", 16, 32, 2.0, 270.0),
            Flavor("c3-64", 32, 64, 4.0, 540.0),
            Flavor("b3-8", 2, 8, 0.5, 45.0),
            Flavor("b3-16", 4, 16, 1.0, 88.0),
            Flavor("b3-32", 8, 32, 2.0, 175.0),
            Flavor("b3-64", 16, 64, 4.0, 350.0),
            Flavor("b3-128", 32, 128, 8.0, 700.0),
        ),
        block_eur_per_gib_month=0.08,
        floating_ip_eur_month=2.0,
        source="OVHcloud Public Cloud list prices (b3/c3, 2024-2025, excl. VAT) + ~30 % SecNumCloud premium",
    ),
    "acceptance": Offer(
        name="acceptance",
        description="the project's single-machine OpenStack (Zed, fake drivers) for acceptance tests",
        # The flavors scripts/openstack-cloud.sh creates; nothing runs on them (the fake Nova driver
        # boots no guest), so the bandwidth only makes `visio plan acceptance` meaningful.
        flavors=(
            Flavor("a1.small", 1, 2, 1.0, 0.0),
            Flavor("a1.medium", 2, 4, 1.0, 0.0),
        ),
        block_eur_per_gib_month=0.0,
        floating_ip_eur_month=0.0,
        source="no cost: a test cloud on the CI machine",
    ),
    "lab": Offer(
        name="lab",
        description="local lab: systemd-nspawn machines sharing this host",
        # The machines share the host's 2 cores; the figures only make `visio plan lab` meaningful.
        flavors=(Flavor("nspawn", 2, 4, 1.0, 0.0),),
        block_eur_per_gib_month=0.0,
        floating_ip_eur_month=0.0,
        source="no cost: machines on the operator's own host",
    ),
}
"""Offer name (the stack's `cloud.offer`, or `lab`) -> price table."""

FREE_OFFERS = frozenset({"lab", "acceptance"})
"""The project's own test environments (this host's lab, the acceptance cloud): nothing is billed."""


def offer(name: str) -> Offer:
    """The price table of an offer; KeyError names the known offers."""
    try:
        return OFFERS[name]
    except KeyError:
        raise KeyError(f"unknown offer '{name}'; known offers: {', '.join(sorted(OFFERS))}") from None
