"""The alert rules, checked by Prometheus's own promtool: the files load, and every alert fires when it
should and stays silent when it should not (`promtool test rules` over synthetic series).

Each case below is one promtool test group: input series, an evaluation time, and the alerts
expected then (an empty list = silent). The expected annotations are the rule's own with the
expected labels filled in, so promtool also checks the annotation templates render.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import RULES, render, run_tool
from pulumi_mocks import sample_config

from tests.verify.expectations import duration_seconds

# Labels every scraped series carries (prometheus.yml): job, instance, node, role.
SFU = 'node="sfu-1",role="sfu",instance="10.0.0.1:9100"'
TURN = 'node="turn-1",role="turn",instance="10.0.0.5:9100"'
TURN_2 = 'node="turn-2",role="turn",instance="10.0.0.6:9100"'
DB = 'role="db",scope="visio"'


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


# Patroni 3.0.2 labels its metrics with `scope` only (no `name`): the series below are what it serves.
def _patroni(metric: str, values: Callable[[int], str]) -> list[dict[str, str]]:
    """One Patroni series per DB member db-1..db-3, `values(member)` giving each one's samples."""
    return [_series(metric, f'job="patroni",node="db-{i}",{DB}', values(i)) for i in (1, 2, 3)]


def _leader_is(member: int) -> Callable[[int], str]:
    return lambda i: "1x10" if i == member else "0x10"


def _labels(labels: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', labels))


CASES: list[dict[str, Any]] = [
    # --- maintenance --------------------------------------------------------------------------
    {
        "name": "drain marker raises NodeDraining",
        "alert": "NodeDraining",
        "at": "2m",
        "series": [_series("visio_node_draining", f'job="node",{SFU}', "1x10")],
        "fire": [{"node": "sfu-1", "role": "sfu", "severity": "info"}],
    },
    {
        "name": "no drain marker, no NodeDraining",
        "alert": "NodeDraining",
        "at": "2m",
        "series": [_series("visio_node_draining", f'job="node",{SFU}', "0x10")],
        "fire": [],
    },
    {
        "name": "a drain of 2 h is not too long",
        "alert": "NodeDrainingTooLong",
        "at": "2h",
        "series": [_series("visio_node_draining", f'job="node",{SFU}', "1x300")],
        "fire": [],
    },
    {
        "name": "a drain of 3 h is",
        "alert": "NodeDrainingTooLong",
        "at": "3h10m",
        "series": [_series("visio_node_draining", f'job="node",{SFU}', "1x300")],
        "fire": [{"node": "sfu-1", "role": "sfu", "severity": "ticket"}],
    },
    # --- nodes --------------------------------------------------------------------------------
    {
        "name": "node exporter unreachable",
        "alert": "NodeDown",
        "at": "5m",
        "series": [_series("up", f'job="node",{SFU}', "0x10")],
        "fire": [{"job": "node", **_labels(SFU), "severity": "page"}],
    },
    {
        "name": "a 2-minute blip is not a node down",
        "alert": "NodeDown",
        "at": "5m",
        "series": [_series("up", f'job="node",{SFU}', "0 0 1x8")],
        "fire": [],
    },
    {
        "name": "patroni metrics not scraped",
        "alert": "ExporterDown",
        "at": "7m",
        "series": [_series("up", 'job="patroni",node="db-1",role="db",instance="10.0.1.1:8008"', "0x10")],
        "fire": [
            {
                "job": "patroni",
                "node": "db-1",
                "role": "db",
                "instance": "10.0.1.1:8008",
                "severity": "ticket",
            }
        ],
    },
    {
        "name": "exporters scraped",
        "alert": "ExporterDown",
        "at": "7m",
        "series": [_series("up", 'job="redis",node="redis-1",role="redis",instance="10.0.1.9:9121"', "1x10")],
        "fire": [],
    },
    {
        "name": "root filesystem 95 % full",
        "alert": "DiskAlmostFull",
        "at": "15m",
        "series": [
            _series("node_filesystem_avail_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "5x20"),
            _series("node_filesystem_size_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "100x20"),
        ],
        "fire": [{"job": "node", **_labels(SFU), "fstype": "ext4", "mountpoint": "/", "severity": "page"}],
    },
    {
        "name": "half-empty filesystem, and a full tmpfs, are fine",
        "alert": "DiskAlmostFull",
        "at": "15m",
        "series": [
            _series("node_filesystem_avail_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "50x20"),
            _series("node_filesystem_size_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "100x20"),
            _series(
                "node_filesystem_avail_bytes", f'job="node",{SFU},fstype="tmpfs",mountpoint="/run"', "1x20"
            ),
            _series(
                "node_filesystem_size_bytes", f'job="node",{SFU},fstype="tmpfs",mountpoint="/run"', "100x20"
            ),
        ],
        "fire": [],
    },
    {
        "name": "filesystem at 20 % losing 1.2 % an hour",
        "alert": "DiskFillingSoon",
        "at": "2h",
        "series": [
            _series(
                "node_filesystem_avail_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "20-0.02x200"
            ),
            _series(
                "node_filesystem_size_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "100x200"
            ),
        ],
        "fire": [{"job": "node", **_labels(SFU), "fstype": "ext4", "mountpoint": "/", "severity": "ticket"}],
    },
    {
        "name": "filesystem at 20 % but steady",
        "alert": "DiskFillingSoon",
        "at": "2h",
        "series": [
            _series(
                "node_filesystem_avail_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "20x200"
            ),
            _series(
                "node_filesystem_size_bytes", f'job="node",{SFU},fstype="ext4",mountpoint="/"', "100x200"
            ),
        ],
        "fire": [],
    },
    # --- SFU ----------------------------------------------------------------------------------
    {
        "name": "LiveKit metrics unreachable",
        "alert": "SFUNodeDown",
        "at": "3m",
        "series": [_series("up", 'job="livekit",node="sfu-1",role="sfu",instance="10.0.0.1:6789"', "0x10")],
        "fire": [
            {
                "job": "livekit",
                "node": "sfu-1",
                "role": "sfu",
                "instance": "10.0.0.1:6789",
                "severity": "page",
            }
        ],
    },
    {
        "name": "LiveKit answering",
        "alert": "SFUNodeDown",
        "at": "3m",
        "series": [_series("up", 'job="livekit",node="sfu-1",role="sfu",instance="10.0.0.1:6789"', "1x10")],
        "fire": [],
    },
    {
        "name": "signalling probe failing",
        "alert": "SignallingEndpointDown",
        "at": "3m",
        "series": [
            _series("probe_success", 'job="signalling",node="sfu-1",role="sfu",instance="https://x/"', "0x10")
        ],
        "fire": [
            {
                "job": "signalling",
                "node": "sfu-1",
                "role": "sfu",
                "instance": "https://x/",
                "severity": "page",
            }
        ],
    },
    {
        "name": "signalling probe passing",
        "alert": "SignallingEndpointDown",
        "at": "3m",
        "series": [
            _series("probe_success", 'job="signalling",node="sfu-1",role="sfu",instance="https://x/"', "1x10")
        ],
        "fire": [],
    },
    {
        "name": "SFU busy 80 % for 25 minutes (target 70 %)",
        "alert": "SFUCPUAboveSizingTarget",
        "at": "30m",
        "series": [_series("node_cpu_seconds_total", f'job="node",{SFU},cpu="0",mode="idle"', "0+12x40")],
        "fire": [{"node": "sfu-1", "role": "sfu", "severity": "ticket"}],
    },
    {
        "name": "SFU busy 50 %, and a DB node busy 80 %",
        "alert": "SFUCPUAboveSizingTarget",
        "at": "30m",
        "series": [
            _series("node_cpu_seconds_total", f'job="node",{SFU},cpu="0",mode="idle"', "0+30x40"),
            _series(
                "node_cpu_seconds_total", 'job="node",node="db-1",role="db",cpu="0",mode="idle"', "0+12x40"
            ),
        ],
        "fire": [],
    },
    {
        "name": "95 participants on a node sized for 100",
        "alert": "SFUParticipantsNearCapacity",
        "at": "10m",
        "series": [
            _series(
                "livekit_participant_total", 'job="livekit",node="sfu-1",role="sfu",node_id="ND_1"', "95x20"
            )
        ],
        "fire": [{"node": "sfu-1", "role": "sfu", "severity": "ticket"}],
    },
    {
        "name": "80 participants on a node sized for 100",
        "alert": "SFUParticipantsNearCapacity",
        "at": "10m",
        "series": [
            _series(
                "livekit_participant_total", 'job="livekit",node="sfu-1",role="sfu",node_id="ND_1"', "80x20"
            )
        ],
        "fire": [],
    },
    {
        "name": "10 % incoming loss at 1000 packets/s",
        "alert": "SFUHighPacketLoss",
        "at": "20m",
        "series": [
            _series(
                "livekit_packet_total",
                'job="livekit",node="sfu-1",role="sfu",direction="incoming",transmission="initial"',
                "0+60000x30",
            ),
            _series(
                "livekit_packet_loss_percent_sum",
                'job="livekit",node="sfu-1",role="sfu",direction="incoming",source="CAMERA",type="VIDEO"',
                "0+600x30",
            ),
            _series(
                "livekit_packet_loss_percent_count",
                'job="livekit",node="sfu-1",role="sfu",direction="incoming",source="CAMERA",type="VIDEO"',
                "0+60x30",
            ),
        ],
        "fire": [{"node": "sfu-1", "role": "sfu", "direction": "incoming", "severity": "ticket"}],
    },
    {
        "name": "1 % mean loss, and 20 % on a trickle of 50 packets/s",
        "alert": "SFUHighPacketLoss",
        "at": "20m",
        "series": [
            _series(
                "livekit_packet_total",
                'job="livekit",node="sfu-1",role="sfu",direction="incoming",transmission="initial"',
                "0+60000x30",
            ),
            _series(
                "livekit_packet_loss_percent_sum",
                'job="livekit",node="sfu-1",role="sfu",direction="incoming",source="CAMERA",type="VIDEO"',
                "0+60x30",
            ),
            _series(
                "livekit_packet_loss_percent_count",
                'job="livekit",node="sfu-1",role="sfu",direction="incoming",source="CAMERA",type="VIDEO"',
                "0+60x30",
            ),
            _series(
                "livekit_packet_total",
                'job="livekit",node="sfu-2",role="sfu",direction="incoming",transmission="initial"',
                "0+3000x30",
            ),
            _series(
                "livekit_packet_loss_percent_sum",
                'job="livekit",node="sfu-2",role="sfu",direction="incoming",source="CAMERA",type="VIDEO"',
                "0+1200x30",
            ),
            _series(
                "livekit_packet_loss_percent_count",
                'job="livekit",node="sfu-2",role="sfu",direction="incoming",source="CAMERA",type="VIDEO"',
                "0+60x30",
            ),
        ],
        "fire": [],
    },
    # --- TURN ---------------------------------------------------------------------------------
    {
        "name": "TURN refuses connections",
        "alert": "TURNNodeDown",
        "at": "3m",
        "series": [
            _series(
                "probe_success", 'job="turn",node="turn-1",role="turn",instance="203.0.113.5:3478"', "0x10"
            )
        ],
        "fire": [
            {
                "job": "turn",
                "node": "turn-1",
                "role": "turn",
                "instance": "203.0.113.5:3478",
                "severity": "page",
            }
        ],
    },
    {
        "name": "TURN accepts connections",
        "alert": "TURNNodeDown",
        "at": "3m",
        "series": [
            _series(
                "probe_success", 'job="turn",node="turn-1",role="turn",instance="203.0.113.5:3478"', "1x10"
            )
        ],
        "fire": [],
    },
    {
        "name": "3500 allocations against a quota of 4000",
        "alert": "TURNAllocationsNearQuota",
        "at": "10m",
        "series": [
            _series("visio_turn_allocations", f'job="node",{TURN}', "3500x20"),
            _series("visio_turn_allocation_quota", f'job="node",{TURN}', "4000x20"),
        ],
        "fire": [{"node": "turn-1", "role": "turn", "severity": "ticket"}],
    },
    {
        "name": "2000 allocations against 4000; and 5000 on a node without quota",
        "alert": "TURNAllocationsNearQuota",
        "at": "10m",
        "series": [
            _series("visio_turn_allocations", f'job="node",{TURN}', "2000x20"),
            _series("visio_turn_allocation_quota", f'job="node",{TURN}', "4000x20"),
            _series("visio_turn_allocations", f'job="node",{TURN_2}', "5000x20"),
            _series("visio_turn_allocation_quota", f'job="node",{TURN_2}', "0x20"),
        ],
        "fire": [],
    },
    {
        "name": "allocation figures last written 10 minutes ago; and never on another TURN node",
        "alert": "TURNAllocationFiguresStale",
        "at": "10m",
        "series": [
            _series("node_textfile_mtime_seconds", f'job="node",{TURN},file="visio_turn.prom"', "0x20"),
            _series("up", f'job="node",{TURN}', "1x20"),
            _series("up", f'job="node",{TURN_2}', "1x20"),
        ],
        "fire": [
            {"node": "turn-1", "role": "turn", "severity": "ticket"},
            {"node": "turn-2", "role": "turn", "severity": "ticket"},
        ],
    },
    {
        "name": "allocation figures written every minute; other nodes need none",
        "alert": "TURNAllocationFiguresStale",
        "at": "10m",
        "series": [
            _series("node_textfile_mtime_seconds", f'job="node",{TURN},file="visio_turn.prom"', "0+60x20"),
            _series("up", f'job="node",{TURN}', "1x20"),
            _series("up", f'job="node",{SFU}', "1x20"),
        ],
        "fire": [],
    },
    # --- database -----------------------------------------------------------------------------
    {
        "name": "PostgreSQL stopped under Patroni",
        "alert": "PostgresDown",
        "at": "3m",
        "series": [
            _series("patroni_postgres_running", f'job="patroni",node="db-2",{DB}', "0x10")
        ],
        "fire": [{"job": "patroni", "node": "db-2", **_labels(DB), "severity": "page"}],
    },
    {
        "name": "PostgreSQL running",
        "alert": "PostgresDown",
        "at": "3m",
        "series": [
            _series("patroni_postgres_running", f'job="patroni",node="db-2",{DB}', "1x10")
        ],
        "fire": [],
    },
    {
        "name": "no member holds the leader lock",
        "alert": "PostgresNoPrimary",
        "at": "3m",
        "series": _patroni("patroni_primary", lambda _i: "0x10"),
        "fire": [{"scope": "visio", "severity": "page"}],
    },
    {
        "name": "one leader",
        "alert": "PostgresNoPrimary",
        "at": "3m",
        "series": _patroni("patroni_primary", _leader_is(1)),
        "fire": [],
    },
    {
        "name": "leader without synchronous standby",
        "alert": "PostgresNoSynchronousStandby",
        "at": "5m",
        "series": [
            *_patroni("patroni_primary", _leader_is(1)),
            *_patroni("patroni_sync_standby", lambda _i: "0x10"),
        ],
        "fire": [{"scope": "visio", "severity": "page"}],
    },
    {
        "name": "leader with a synchronous standby; and no alert twice when there is no leader at all",
        "alert": "PostgresNoSynchronousStandby",
        "at": "5m",
        "series": [
            *_patroni("patroni_primary", _leader_is(1)),
            *_patroni("patroni_sync_standby", _leader_is(2)),
            _series("patroni_primary", 'job="patroni",node="x-1",role="db",scope="other"', "0x10"),
            _series(
                "patroni_sync_standby", 'job="patroni",node="x-1",role="db",scope="other"', "0x10"
            ),
        ],
        "fire": [],
    },
    {
        "name": "replica receives nothing while the leader writes",
        "alert": "PostgresReplicaNotReplicating",
        "at": "15m",
        "series": [
            _series("patroni_xlog_location", f'job="patroni",node="db-1",{DB}', "0+1000x30"),
            _series("patroni_replica", f'job="patroni",node="db-2",{DB}', "1x30"),
            _series(
                "patroni_xlog_received_location", f'job="patroni",node="db-2",{DB}', "500x30"
            ),
        ],
        "fire": [{"job": "patroni", "node": "db-2", **_labels(DB), "severity": "ticket"}],
    },
    {
        "name": "replica streaming; and an idle leader with an idle replica",
        "alert": "PostgresReplicaNotReplicating",
        "at": "15m",
        "series": [
            _series("patroni_xlog_location", f'job="patroni",node="db-1",{DB}', "0+1000x30"),
            _series("patroni_replica", f'job="patroni",node="db-2",{DB}', "1x30"),
            _series(
                "patroni_xlog_received_location", f'job="patroni",node="db-2",{DB}', "0+1000x30"
            ),
            _series(
                "patroni_xlog_location", 'job="patroni",node="x-1",role="db",scope="idle"', "9x30"
            ),
            _series("patroni_replica", 'job="patroni",node="x-2",role="db",scope="idle"', "1x30"),
            _series(
                "patroni_xlog_received_location",
                'job="patroni",node="x-2",role="db",scope="idle"',
                "9x30",
            ),
        ],
        "fire": [],
    },
    {
        "name": "replica replays 100 MB behind",
        "alert": "PostgresReplicationLag",
        "at": "10m",
        "series": [
            _series("patroni_xlog_location", f'job="patroni",node="db-1",{DB}', "200000000x20"),
            _series("patroni_replica", f'job="patroni",node="db-1",{DB}', "0x20"),
            _series("patroni_xlog_replayed_location", f'job="patroni",node="db-1",{DB}', "0x20"),
            _series("patroni_xlog_location", f'job="patroni",node="db-2",{DB}', "0x20"),
            _series("patroni_replica", f'job="patroni",node="db-2",{DB}', "1x20"),
            _series(
                "patroni_xlog_replayed_location",
                f'job="patroni",node="db-2",{DB}',
                "100000000x20",
            ),
        ],
        "fire": [{"job": "patroni", "node": "db-2", **_labels(DB), "severity": "ticket"}],
    },
    {
        "name": "replica 10 MB behind (and the leader itself never counts)",
        "alert": "PostgresReplicationLag",
        "at": "10m",
        "series": [
            _series("patroni_xlog_location", f'job="patroni",node="db-1",{DB}', "200000000x20"),
            _series("patroni_replica", f'job="patroni",node="db-1",{DB}', "0x20"),
            _series("patroni_xlog_replayed_location", f'job="patroni",node="db-1",{DB}', "0x20"),
            _series("patroni_xlog_location", f'job="patroni",node="db-2",{DB}', "0x20"),
            _series("patroni_replica", f'job="patroni",node="db-2",{DB}', "1x20"),
            _series(
                "patroni_xlog_replayed_location",
                f'job="patroni",node="db-2",{DB}',
                "190000000x20",
            ),
        ],
        "fire": [],
    },
    # --- consensus stores ---------------------------------------------------------------------
    {
        "name": "two of three etcd members down",
        "alert": "EtcdNoQuorum",
        "at": "3m",
        "series": [
            _series(
                "up",
                f'job="etcd",node="db-{i}",role="db",instance="10.0.1.{i}:2381"',
                "1x10" if i == 1 else "0x10",
            )
            for i in (1, 2, 3)
        ],
        "fire": [{"severity": "page"}],
    },
    {
        "name": "every etcd member down",
        "alert": "EtcdNoQuorum",
        "at": "3m",
        "series": [
            _series("up", f'job="etcd",node="db-{i}",role="db",instance="10.0.1.{i}:2381"', "0x10")
            for i in (1, 2, 3)
        ],
        "fire": [{"severity": "page"}],
    },
    {
        "name": "one of three etcd members down",
        "alert": "EtcdNoQuorum",
        "at": "3m",
        "series": [
            _series(
                "up",
                f'job="etcd",node="db-{i}",role="db",instance="10.0.1.{i}:2381"',
                "0x10" if i == 3 else "1x10",
            )
            for i in (1, 2, 3)
        ],
        "fire": [],
    },
    {
        "name": "etcd member sees no leader",
        "alert": "EtcdMemberWithoutLeader",
        "at": "3m",
        "series": [
            _series(
                "etcd_server_has_leader", 'job="etcd",node="db-1",role="db",instance="10.0.1.1:2381"', "0x10"
            )
        ],
        "fire": [
            {"job": "etcd", "node": "db-1", "role": "db", "instance": "10.0.1.1:2381", "severity": "page"}
        ],
    },
    {
        "name": "etcd member has a leader",
        "alert": "EtcdMemberWithoutLeader",
        "at": "3m",
        "series": [
            _series(
                "etcd_server_has_leader", 'job="etcd",node="db-1",role="db",instance="10.0.1.1:2381"', "1x10"
            )
        ],
        "fire": [],
    },
    {
        "name": "three Redis replicas, no master",
        "alert": "RedisNoMaster",
        "at": "3m",
        "series": [
            *[
                _series("up", f'job="redis",node="redis-{i}",role="redis",instance="10.0.2.{i}:9121"', "1x10")
                for i in (1, 2, 3)
            ],
            *[
                _series(
                    "redis_instance_info",
                    f'job="redis",node="redis-{i}",role="redis",exported_role="slave",'
                    f'instance="10.0.2.{i}:9121"',
                    "1x10",
                )
                for i in (1, 2, 3)
            ],
        ],
        "fire": [{"severity": "page"}],
    },
    {
        "name": "a Redis master; and a stack without Redis targets",
        "alert": "RedisNoMaster",
        "at": "3m",
        "series": [
            *[
                _series("up", f'job="redis",node="redis-{i}",instance="10.0.2.{i}:9121"', "1x10")
                for i in (1, 2, 3)
            ],
            *[
                _series(
                    "redis_instance_info",
                    f'job="redis",node="redis-{i}",role="redis",'
                    f'exported_role="{"master" if i == 1 else "slave"}",'
                    f'instance="10.0.2.{i}:9121"',
                    "1x10",
                )
                for i in (1, 2, 3)
            ],
        ],
        "fire": [],
    },
    {
        "name": "two Redis masters",
        "alert": "RedisSeveralMasters",
        "at": "5m",
        "series": [
            _series(
                "redis_instance_info",
                f'job="redis",node="redis-{i}",role="redis",exported_role="master",'
                f'instance="10.0.2.{i}:9121"',
                "1x10",
            )
            for i in (1, 2)
        ],
        "fire": [{"severity": "page"}],
    },
    {
        "name": "one Redis master",
        "alert": "RedisSeveralMasters",
        "at": "5m",
        "series": [
            _series(
                "redis_instance_info",
                f'job="redis",node="redis-{i}",role="redis",'
                f'exported_role="{"master" if i == 1 else "slave"}",'
                f'instance="10.0.2.{i}:9121"',
                "1x10",
            )
            for i in (1, 2)
        ],
        "fire": [],
    },
    # --- certificates and backups -------------------------------------------------------------
    # promtool starts the clock at 0: at 15m time() is 900, so 864900 is "in 10 days".
    {
        "name": "certificate expires in 10 days",
        "alert": "CertificateExpiresSoon",
        "at": "15m",
        "series": [
            _series(
                "probe_ssl_earliest_cert_expiry",
                'job="turn",node="turn-1",role="turn",instance="203.0.113.5:443"',
                "864900x20",
            )
        ],
        "fire": [
            {
                "job": "turn",
                "node": "turn-1",
                "role": "turn",
                "instance": "203.0.113.5:443",
                "severity": "ticket",
            }
        ],
    },
    {
        "name": "certificate expires in 30 days",
        "alert": "CertificateExpiresSoon",
        "at": "15m",
        "series": [
            _series(
                "probe_ssl_earliest_cert_expiry",
                'job="turn",node="turn-1",role="turn",instance="203.0.113.5:443"',
                "2592900x20",
            )
        ],
        "fire": [],
    },
    {
        "name": "last backup 26 hours ago",
        "alert": "BackupTooOld",
        "at": "26h15m",
        "interval": "5m",
        "series": [
            _series(
                "visio_pg_backup_last_success_timestamp_seconds",
                'job="node",node="db-1",role="db",instance="10.0.1.1:9100"',
                "0x400",
            )
        ],
        "fire": [{"role": "db", "severity": "ticket"}],
    },
    {
        "name": "old backup on the former leader, 6 h old on the new one",
        "alert": "BackupTooOld",
        "at": "26h15m",
        "interval": "5m",
        "series": [
            _series(
                "visio_pg_backup_last_success_timestamp_seconds",
                'job="node",node="db-1",role="db",instance="10.0.1.1:9100"',
                "0x400",
            ),
            _series(
                "visio_pg_backup_last_success_timestamp_seconds",
                'job="node",node="db-2",role="db",instance="10.0.1.2:9100"',
                "72000x400",
            ),
        ],
        "fire": [],
    },
    {
        "name": "DB nodes scraped for 26 h, no backup ever",
        "alert": "BackupNeverRecorded",
        "at": "26h",
        "interval": "5m",
        "series": [_series("up", 'job="node",node="db-1",role="db",instance="10.0.1.1:9100"', "1x400")],
        "fire": [{"severity": "ticket"}],
    },
    {
        "name": "a backup recorded",
        "alert": "BackupNeverRecorded",
        "at": "26h",
        "interval": "5m",
        "series": [
            _series("up", 'job="node",node="db-1",role="db",instance="10.0.1.1:9100"', "1x400"),
            _series(
                "visio_pg_backup_last_success_timestamp_seconds",
                'job="node",node="db-1",role="db",instance="10.0.1.1:9100"',
                "72000x400",
            ),
        ],
        "fire": [],
    },
]


def _alert_rules() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}


def _expected_annotations(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    def fill(text: str) -> str:
        filled = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        assert "{{" not in filled, f"{rule['alert']}: annotation uses more than $labels: {text}"
        return filled

    return {key: fill(value) for key, value in rule["annotations"].items()}


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rule file and the thresholds file rendered by the role (CPU target 0.7, 100 participants)."""
    from monitoring_support import inventory_for

    config = sample_config()
    directory = tmp_path_factory.mktemp("rules")
    (directory / "visio-alerts.yml").write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    thresholds = render(
        "visio-thresholds.yml.j2",
        config,
        inventory_for(config),
        monitoring_sfu_cpu_target=0.7,
        monitoring_sfu_participants_per_node=100,
        monitoring_disk_filling_free_fraction=0.25,
    )
    (directory / "visio-thresholds.yml").write_text(thresholds, encoding="utf-8")
    return directory


def test_promtool_accepts_the_rule_files(rules_dir: Path) -> None:
    result = run_tool("promtool", "check", "rules", "visio-alerts.yml", "visio-thresholds.yml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_says_what_it_is_and_what_to_do() -> None:
    for name, rule in _alert_rules().items():
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{name}: no summary"
        runbook = annotations.get("runbook", "")
        assert runbook and "\n" not in runbook.strip(), f"{name}: needs a one-line runbook"
        assert rule.get("labels", {}).get("severity") in {"page", "ticket", "info"}, name


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    fires = {case["alert"] for case in CASES if case["fire"]}
    silent = {case["alert"] for case in CASES if not case["fire"]}
    alerts = set(_alert_rules())
    assert alerts - fires == set(), f"alerts never shown firing: {sorted(alerts - fires)}"
    assert alerts - silent == set(), f"alerts never shown silent: {sorted(alerts - silent)}"
    assert {case["alert"] for case in CASES} <= alerts


LONG_CASE_HOURS = 2
"""Cases evaluated this late go to a second file evaluated every LONG_CASE_STEP, not every minute:
promtool evaluates every rule at every step, and a day at 1-minute steps takes seconds. The two
files run side by side."""
LONG_CASE_STEP = "4m"
"""Under Prometheus' 5-minute lookback, so a rule reading another group's recording (the sizing
thresholds of visio-thresholds.yml) always finds the previous step's sample, whichever group
promtool evaluates first. With 15 minutes it found none when the alerts' group went first, and
DiskFillingSoon's case failed one run in three on a loaded machine."""


def test_rules_fire_when_they_should_and_stay_silent_otherwise(rules_dir: Path) -> None:
    rules = _alert_rules()
    files: dict[str, list[dict[str, Any]]] = {"1m": [], LONG_CASE_STEP: []}
    for case in CASES:
        rule = rules[case["alert"]]
        expected = [
            {"exp_labels": labels, "exp_annotations": _expected_annotations(rule, labels)}
            for labels in case["fire"]
        ]
        files[LONG_CASE_STEP if duration_seconds(case["at"]) >= LONG_CASE_HOURS * 3600 else "1m"].append(
            {
                "name": case["name"],
                "interval": case.get("interval", "1m"),
                "input_series": case["series"],
                "alert_rule_test": [
                    {"eval_time": case["at"], "alertname": case["alert"], "exp_alerts": expected}
                ],
            }
        )
    names = []
    for step, groups in files.items():
        tests = {
            "rule_files": ["visio-alerts.yml", "visio-thresholds.yml"],
            "evaluation_interval": step,
            "tests": groups,
        }
        name = f"tests-{step}.yml"
        (rules_dir / name).write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
        names.append(name)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(
            pool.map(lambda name: run_tool("promtool", "test", "rules", name, cwd=rules_dir), names)
        )
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout, result.stdout


def test_the_rule_tests_can_fail(rules_dir: Path) -> None:
    """A case expecting the wrong outcome makes promtool fail: the harness is not vacuous."""
    case = next(c for c in CASES if c["alert"] == "SFUNodeDown" and not c["fire"])
    tests = {
        "rule_files": ["visio-alerts.yml", "visio-thresholds.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": case["series"],
                "alert_rule_test": [
                    {
                        "eval_time": case["at"],
                        "alertname": "SFUNodeDown",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    }
                ],
            }
        ],
    }
    (rules_dir / "wrong.yml").write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = run_tool("promtool", "test", "rules", "wrong.yml", cwd=rules_dir)
    assert result.returncode != 0
