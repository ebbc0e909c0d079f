"""`visio:audience` and `visio:sizing`: who uses the service and the figures sizing uses."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from visio_infra.model.config.base import _Model


class Audience(_Model):
    """Who will use it, which drives sizing and the cost comparison."""

    users: Annotated[int, Field(gt=0)]
    """Accounts that may use Visio (DB sizing, licence cost replaced)."""
    peak_participants: Annotated[int, Field(gt=0)]
    """Simultaneous participants at the busiest hour, across all meetings."""
    video_share: Annotated[float, Field(ge=0, le=1)]
    """Share of participants publishing video (the rest is audio-only)."""
    largest_meeting: Annotated[int, Field(gt=1)]
    """Participants in the largest single meeting (it must fit on one SFU node)."""
    turn_share: Annotated[float, Field(ge=0, le=1)]
    """Share of participants behind firewalls that only allow TURN over TCP/TLS."""

    @model_validator(mode="after")
    def _coherent(self) -> Audience:
        problems = []
        if self.peak_participants > self.users:
            problems.append(
                f"peak_participants: {self.peak_participants} exceeds users ({self.users}); "
                "simultaneous participants are at most the number of accounts"
            )
        if self.largest_meeting > self.peak_participants:
            problems.append(
                f"largest_meeting: {self.largest_meeting} exceeds peak_participants "
                f"({self.peak_participants}); a meeting is part of the peak"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Coefficients(_Model):
    """Capacity figures from LiveKit's published benchmark (shared/REFERENCE.md), overridable."""

    vcpu_per_video_participant: Annotated[float, Field(gt=0)] = 0.09
    vcpu_per_audio_participant: Annotated[float, Field(gt=0)] = 0.004
    mbps_in_per_video_participant: Annotated[float, Field(gt=0)] = 2.7
    mbps_out_per_video_participant: Annotated[float, Field(gt=0)] = 5.0
    mbps_per_audio_participant: Annotated[float, Field(gt=0)] = 0.06
    target_cpu_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.7
    """Plan SFU CPU at this share of a node so a spike or a drained neighbour fits."""
    nic_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.7
    """Plan NIC bandwidth at this share of a flavor's limit (bursts, retransmissions, key frames)."""
    sfu_reserved_vcpu_per_node: Annotated[float, Field(ge=0)] = 1.0
    """vCPU kept for the OS, kernel networking and agents on each SFU node (not from the benchmark)."""
    turn_allocations_per_relay_ip: Annotated[int, Field(gt=0)] = 16000
    """coturn allocations one relay address serves with the default port range (REFERENCE.md)."""
    turn_allocations_per_participant: Annotated[int, Field(gt=0)] = 2
    """LiveKit opens a publisher and a subscriber peer connection, each relayed separately."""
    turn_allocations_per_vcpu: Annotated[int, Field(gt=0)] = 2000
    """coturn is bandwidth-bound: "thousands of allocations per CPU" (REFERENCE.md), TLS included."""
    db_users_per_vcpu: Annotated[int, Field(gt=0)] = 50000
    """Meet backend queries per user are light (join, room rights); one vCPU serves this many accounts."""
    db_users_per_ram_gib: Annotated[int, Field(gt=0)] = 25000
    """RAM so the working set (users, rooms, accesses) and connections stay in memory."""
    db_kib_per_user: Annotated[float, Field(gt=0)] = 50.0
    """Data per account (user, rooms, accesses, recordings metadata, indexes)."""
    db_volume_headroom: Annotated[float, Field(ge=1)] = 4.0
    """Data volume = data x headroom (WAL, bloat, growth, dumps staged before upload)."""
    db_second_replica_users: Annotated[int, Field(gt=0)] = 200000
    """From this many users, a second replica keeps a standby while a failed node is rebuilt."""


class Sizing(_Model):
    """Sizing knobs. `nodes` pins counts (the lab); otherwise they are derived from the audience."""

    coefficients: Coefficients = Coefficients()
    nodes: dict[
        Literal["sfu", "turn", "db", "redis", "bastion", "monitoring"], Annotated[int, Field(ge=0)]
    ] = Field(default_factory=dict)
    spare_nodes: Annotated[int, Field(ge=1)] = 1
    """Extra SFU/TURN nodes so one can drain during upgrades without losing capacity."""
