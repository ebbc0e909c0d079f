"""`visio:network` and `visio:ports`: one subnet per tier, who may reach what, media ports."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from visio_infra.model.config.base import AnyNet, IPv4Net, _Model

LIVEKIT_RESERVED_TCP_PORTS = {7880: "LiveKit's HTTP/WebSocket listener", 6789: "LiveKit's metrics listener"}
"""TCP ports on an SFU node the ICE/TCP port must not take (kept in step with security_rules)."""

TURN_LISTENING_PORTS = {3478: "TURN listener", 5349: "TURN over TLS listener", 9641: "coturn metrics"}
"""Ports on a TURN node the relay range must not contain."""

BROADEST_PUBLIC_ADMIN_PREFIX = {4: 16, 6: 32}
"""A public admin CIDR broader than this is "SSH open to a large part of the Internet"."""


class Network(_Model):
    """Address plan: one subnet per tier, plus who may reach what."""

    edge_cidr: IPv4Net
    """SFU and TURN nodes."""
    data_cidr: IPv4Net
    """Database and Redis nodes."""
    admin_cidr: IPv4Net
    """Bastion."""
    app_cidr: AnyNet
    """Where the Meet backend runs: the only clients allowed to reach PostgreSQL."""
    monitoring_cidr: AnyNet
    """Prometheus scrapers: the only clients allowed to reach metrics ports."""
    admin_cidrs: Annotated[list[AnyNet], Field(min_length=1)]
    """Operators' networks allowed to SSH to the bastion. Never the whole Internet."""
    dns_nameservers: list[ipaddress.IPv4Address] = Field(default_factory=list)

    @field_validator("admin_cidrs")
    @classmethod
    def _no_world_ssh(cls, nets: list[AnyNet]) -> list[AnyNet]:
        for net in nets:
            if net.prefixlen == 0:
                raise ValueError(
                    f"{net} opens SSH to the whole Internet; list the operators' own networks "
                    "(e.g. 192.0.2.0/28)"
                )
            broadest = BROADEST_PUBLIC_ADMIN_PREFIX[net.version]
            if not net.is_private and net.prefixlen < broadest:
                raise ValueError(
                    f"{net} opens SSH to a large part of the Internet; list the operators' own networks "
                    f"(public ranges no broader than /{broadest})"
                )
        return nets

    @field_validator("edge_cidr", "data_cidr", "admin_cidr")
    @classmethod
    def _private_tier(cls, net: IPv4Net) -> IPv4Net:
        if not net.is_private:
            raise ValueError(f"{net} is not a private range; tiers use RFC 1918 space (e.g. 10.20.0.0/24)")
        return net

    @field_validator("monitoring_cidr", "app_cidr")
    @classmethod
    def _not_world(cls, net: AnyNet) -> AnyNet:
        if net.prefixlen == 0:
            raise ValueError(f"{net} is the whole Internet; give the scrapers'/backend's own network")
        return net

    @model_validator(mode="after")
    def _tiers_disjoint(self) -> Network:
        tiers = {"edge_cidr": self.edge_cidr, "data_cidr": self.data_cidr, "admin_cidr": self.admin_cidr}
        problems: list[str] = []
        names = list(tiers)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if tiers[a].overlaps(tiers[b]):
                    problems.append(f"{b}: {tiers[b]} overlaps {a} {tiers[a]}; tiers must be disjoint")
        for name, net in tiers.items():
            if net.prefixlen > 28:
                problems.append(f"{name}: {net} is too small; use at least a /28")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class PortRange(_Model):
    start: Annotated[int, Field(ge=1024, le=65535)]
    end: Annotated[int, Field(ge=1024, le=65535)]

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is above end {self.end}; the range is inverted, swap them")
        return self

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class Ports(_Model):
    """Media ports. LiveKit uses either a UDP range (two ports per participant) or one mux port."""

    sfu_udp_range: PortRange | None = PortRange(start=50000, end=60000)
    sfu_udp_mux_port: Annotated[int, Field(ge=1024, le=65535)] | None = None
    sfu_ice_tcp_port: Annotated[int, Field(ge=1024, le=65535)] = 7881
    turn_relay_range: PortRange = PortRange(start=49152, end=65535)

    @model_validator(mode="after")
    def _one_udp_mode(self) -> Ports:
        problems = []
        if self.sfu_udp_range is not None and self.sfu_udp_mux_port is not None:
            problems.append(
                "sfu_udp_mux_port: set together with sfu_udp_range; LiveKit uses one or the other "
                "(set sfu_udp_range: null to use the mux port)"
            )
        if self.sfu_udp_range is None and self.sfu_udp_mux_port is None:
            problems.append(
                "sfu_udp_range: set a range (e.g. {start: 50000, end: 60000}) or sfu_udp_mux_port"
            )
        if self.sfu_ice_tcp_port in LIVEKIT_RESERVED_TCP_PORTS:
            problems.append(
                f"sfu_ice_tcp_port: {self.sfu_ice_tcp_port} is "
                f"{LIVEKIT_RESERVED_TCP_PORTS[self.sfu_ice_tcp_port]}; use 7881"
            )
        relay = self.turn_relay_range
        inside = [
            f"{port} ({what})"
            for port, what in TURN_LISTENING_PORTS.items()
            if relay.start <= port <= relay.end
        ]
        if inside:
            problems.append(
                f"turn_relay_range: {relay.start}-{relay.end} contains port(s) {', '.join(inside)}; "
                "keep the relay range above them (default 49152-65535)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self
