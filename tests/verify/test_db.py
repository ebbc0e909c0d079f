"""PostgreSQL: TLS-only access for the Meet role from the application network (this machine stands in
for the Meet backend), streaming replication with bounded lag, and backups that really restore.

Patroni runs the cluster (roles/postgresql): the primary is whichever node Patroni reports as leader,
the others are replicas; the cluster checks want exactly one leader, a synchronous standby and an
etcd quorum of every member. Marker rows go to tables in the `postgres` maintenance database, never
into Meet's own database.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from visio_infra.model.node_status import PATRONICTL
from visio_infra.model.security_rules import POSTGRES_PORT

MAX_REPLAY_LAG_BYTES = 16 * 1024 * 1024
"""One WAL segment: a healthy idle replica is far below this."""
MAX_REPLAY_LAG_SECONDS = 10
REPLICATION_WAIT_SECONDS = 15
SCRATCH_PORT = 55432
"""Port of the throw-away instance the restore test starts (Unix socket only, never TCP)."""
CONNECT_TIMEOUT = 15
"""Seconds, per address of the Meet URL. These checks are about TLS, authentication and reaching the primary,
not latency: the restore check below runs a backup and a scratch instance on the primary at the same
time (verify runs its checks in parallel), and on a loaded lab the primary once took over 5 s (the
old bound) to answer while the two standbys refused the read-write session at once."""


@pytest.fixture(scope="module")
def db_nodes(hosts_of):
    nodes = hosts_of("db")
    assert nodes, "the inventory has no db node"
    return nodes


ETCD_TLS = "--cacert=/etc/etcd/tls/ca.crt --cert=/etc/etcd/tls/server.crt --key=/etc/etcd/tls/server.key"


@pytest.fixture(scope="module")
def members(db_nodes):
    """`patronictl list` (member, role, state, lag), read on the first DB node."""
    result = db_nodes[0].host.run(f"{PATRONICTL} list -f json")
    assert result.rc == 0, f"{db_nodes[0]}: patronictl list failed: {result.stderr.strip()[-300:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def primary(db_nodes, members):
    leaders = [m["Member"] for m in members if m["Role"] == "Leader"]
    assert len(leaders) == 1, f"want exactly one Patroni leader: {members}"
    (node,) = [n for n in db_nodes if n.name == leaders[0]]
    return node


@pytest.fixture(scope="module")
def replicas(db_nodes, primary):
    assert len(db_nodes) > 1, "the stack has no replica DB node"
    return [n for n in db_nodes if n is not primary]


def test_one_patroni_leader_and_a_synchronous_standby(db_nodes, members):
    roles = {m["Member"]: m["Role"] for m in members}
    assert sorted(roles) == sorted(n.name for n in db_nodes), f"Patroni members {sorted(roles)}"
    assert list(roles.values()).count("Leader") == 1, roles
    assert list(roles.values()).count("Sync Standby") >= 1, f"no synchronous standby: {roles}"
    assert all(m["State"] == "running" for m in members), members
    config = db_nodes[0].host.run(f"{PATRONICTL} show-config")
    assert config.rc == 0 and "synchronous_mode: true" in config.stdout, "synchronous_mode is not on"


def test_etcd_quorum_has_every_member_healthy(db_nodes):
    endpoints = ",".join(f"https://{n.private_ip}:2379" for n in db_nodes)
    members = db_nodes[0].host.run(f"etcdctl {ETCD_TLS} --endpoints={endpoints} member list -w json")
    assert members.rc == 0, f"etcdctl member list failed: {members.stderr.strip()[-300:]}"
    names = sorted(m.get("name", "") for m in json.loads(members.stdout)["members"])
    assert names == sorted(n.name for n in db_nodes), f"etcd members {names}"
    health = db_nodes[0].host.run(f"etcdctl {ETCD_TLS} --endpoints={endpoints} endpoint health -w json")
    assert health.rc == 0, f"etcd unhealthy: {health.stdout.strip()[-300:]} {health.stderr.strip()[-300:]}"
    assert all(h["health"] for h in json.loads(health.stdout)), health.stdout


def _psql(node, sql: str, database: str = "postgres") -> str:
    command = f"runuser -u postgres -- psql -XAt -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(sql)}"
    result = node.host.run(command)
    assert result.rc == 0, f"{node}: psql failed: {result.stderr.strip()[-300:]}"
    return result.stdout.strip()


def _url(outputs, **changes) -> str:
    parts = urlsplit(str(outputs["database_url"]))
    netloc = parts.netloc
    if "password" in changes:  # the host list (h1:5432,h2:5432,...) after the last '@' is kept as is
        netloc = f"{parts.username or ''}:{changes['password']}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "sslmode" in changes:
        kept = [p for p in query.split("&") if p and not p.startswith("sslmode=")]
        query = "&".join([*kept, f"sslmode={changes['sslmode']}"])
    return urlunsplit((parts.scheme, netloc, parts.path, query.strip("&"), ""))


def test_meet_role_connects_over_verified_tls(outputs, ca_file, config):
    url = str(outputs["database_url"])
    with psycopg.connect(url, sslrootcert=ca_file, connect_timeout=CONNECT_TIMEOUT) as conn:
        row = conn.execute(
            "select s.ssl, s.version, current_user, current_database() "
            "from pg_stat_ssl s where s.pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    ssl_on, version, user, database = row
    assert ssl_on, "the Meet connection is not encrypted"
    assert (user, database) == (config.meet.database_user, config.meet.database)
    assert version in ("TLSv1.2", "TLSv1.3"), f"TLS version {version}"


def test_non_tls_connection_refused(outputs):
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(_url(outputs, sslmode="disable"), connect_timeout=CONNECT_TIMEOUT).close()
    assert "no encryption" in str(refused.value) or "pg_hba.conf" in str(refused.value), (
        f"refused for another reason than missing TLS: {refused.value}"
    )


def test_wrong_password_refused(outputs, ca_file):
    wrong = secrets.token_urlsafe(24)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(
            _url(outputs, password=wrong), sslrootcert=ca_file, connect_timeout=CONNECT_TIMEOUT
        ).close()
    assert "password authentication failed" in str(refused.value), f"unexpected refusal: {refused.value}"


# Runs on a standby as postgres: what Patroni does when an old leader comes back after a crash (it
# asks the leader, as the rewind role of its own config, whether it is out of recovery, before
# deciding to rewind or re-clone). The password stays on the node.
REWIND_CHECK = r"""
import sys
import psycopg2, yaml
auth = yaml.safe_load(open("/etc/patroni/config.yml"))["postgresql"]["authentication"]["rewind"]
auth["user"] = auth.pop("username")
with psycopg2.connect(host=sys.argv[1], port=int(sys.argv[2]), dbname="postgres", connect_timeout=15,
                      **auth) as conn, conn.cursor() as cur:
    cur.execute("SELECT pg_catalog.pg_is_in_recovery()")
    print("in_recovery" if cur.fetchone()[0] else "primary")
"""


def test_an_old_leader_can_ask_the_leader_whether_it_diverged(primary, replicas):
    """Every standby reaches the leader's `postgres` database as Patroni's rewind role. Refused (the
    pg_hba allowed no such login), an old leader back after a power cut with WAL the new leader never
    got stayed a replica on its old timeline, streaming nothing, until rebuilt (a DB drill found it)."""
    for node in replicas:
        check = f"python3 -c {shlex.quote(REWIND_CHECK)} {primary.private_ip} {POSTGRES_PORT}"
        result = node.host.run(f"runuser -u postgres -- {check}")
        assert result.rc == 0, f"{node} -> {primary}: {result.stderr.strip()[-400:]}"
        assert result.stdout.strip() == "primary", f"{node} -> {primary}: {result.stdout.strip()}"


# Runs on a DB node as postgres: the replication connection Patroni 3.0.2 opens to its own PostgreSQL
# to read the local timeline (postgresql/config.py resolve_connection_addresses: the socket directory
# with use_unix_socket_repl, else "localhost" when listening on 127.0.0.1), with its own credentials.
LOCAL_TIMELINE = r"""
import psycopg2, yaml
pg = yaml.safe_load(open("/etc/patroni/config.yml"))["postgresql"]
auth = dict(pg["authentication"]["replication"])
auth["user"] = auth.pop("username")
addresses, port = pg["listen"].rsplit(":", 1)
listen = [a.strip().lower() for a in addresses.split(",")]
tcp = "localhost" if set(listen) & {"*", "0.0.0.0", "127.0.0.1", "localhost"} else listen[0]
socket_dir = pg["parameters"]["unix_socket_directories"].split(",")[0].strip()
host = socket_dir if pg.get("use_unix_socket_repl") else tcp
conn = psycopg2.connect(host=host, port=int(port), dbname="postgres", connect_timeout=5, replication=1,
                        **auth)
conn.autocommit = True  # a WAL sender takes no BEGIN; Patroni's connection is autocommit too
with conn.cursor() as cur:
    cur.execute("IDENTIFY_SYSTEM")
    print(cur.fetchone()[1])
conn.close()
"""


def test_patroni_reads_its_own_timeline(db_nodes, members):
    """Patroni reads a member's timeline over a replication connection to its own PostgreSQL when the
    member is not streaming: exactly when an old leader comes back and Patroni must decide whether it
    diverged. Over TCP to "localhost" with verify-full that connection failed on every node (the
    node's certificate does not name localhost), every 15 s, so that decision had no timeline."""
    timelines = {m["Member"]: m.get("TL") for m in members}
    for node in db_nodes:
        result = node.host.run(f"runuser -u postgres -- python3 -c {shlex.quote(LOCAL_TIMELINE)}")
        assert result.rc == 0, f"{node}: {result.stderr.strip()[-400:]}"
        assert result.stdout.strip() == str(timelines.get(node.name)), (
            f"{node}: local timeline {result.stdout.strip()}, patronictl says {timelines.get(node.name)}"
        )


def test_replicas_stream_with_bounded_lag(primary, replicas):
    rows = _psql(primary, (
        "select client_addr, state, coalesce(extract(epoch from replay_lag), 0), "
        "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0) from pg_stat_replication"
    ))
    streams = {}
    for line in rows.splitlines():
        address, state, lag_seconds, lag_bytes = line.split("|")
        streams[address] = (state, float(lag_seconds), float(lag_bytes))
    for replica in replicas:
        assert replica.private_ip in streams, f"{replica} not replicating from {primary} ({sorted(streams)})"
        state, lag_seconds, lag_bytes = streams[replica.private_ip]
        assert state == "streaming", f"{replica}: replication state {state}"
        assert lag_bytes <= MAX_REPLAY_LAG_BYTES, f"{replica}: {lag_bytes:.0f} bytes behind"
        assert lag_seconds <= MAX_REPLAY_LAG_SECONDS, f"{replica}: replay lag {lag_seconds:.1f} s"
        assert _psql(replica, "select pg_is_in_recovery()") == "t", f"{replica} is not a standby"


def test_row_written_on_primary_appears_on_replicas(primary, replicas):
    token = secrets.token_hex(8)
    _psql(primary, "create table if not exists visio_verify_replication "
                   "(token text primary key, written_at timestamptz not null default now())")
    # `token` is hex from secrets.token_hex: nothing to inject.
    _psql(primary, f"insert into visio_verify_replication (token) values ('{token}')")  # noqa: S608
    try:
        for replica in replicas:
            deadline = time.monotonic() + REPLICATION_WAIT_SECONDS
            found = "0"
            where = f"where token = '{token}'"
            query = ("select case when to_regclass('visio_verify_replication') is null then 0 else "  # noqa: S608
                     "(select count(*) from visio_verify_replication " + where + ") end")
            while time.monotonic() < deadline:
                found = _psql(replica, query)
                if found == "1":
                    break
                time.sleep(0.5)
            assert found == "1", (
                f"{replica}: row written on {primary} absent after {REPLICATION_WAIT_SECONDS} s"
            )
    finally:
        _psql(primary, f"delete from visio_verify_replication where token = '{token}'")  # noqa: S608


def _stanza(facts) -> str:
    return str(facts.get("postgresql_backup_stanza", "visio"))


def test_a_backup_exists(primary, facts):
    import json

    result = primary.host.run(
        f"runuser -u postgres -- pgbackrest --stanza={_stanza(facts)} --output=json info"
    )
    assert result.rc == 0, f"{primary}: pgbackrest info failed: {result.stderr.strip()[-300:]}"
    info = json.loads(result.stdout)
    assert info and info[0]["status"]["code"] == 0, f"{primary}: stanza status {info[0]['status']}"
    backups = info[0].get("backup") or []
    assert backups, f"{primary}: the pgBackRest repository holds no backup"
    assert info[0].get("archive"), f"{primary}: no WAL archive in the repository"


RESTORE_SCRIPT = """
set -eu
cd /  # runuser keeps root's cwd, which postgres may not enter (psql, pg_ctl and pgbackrest chdir back to it)
stanza={stanza}; token={token}; bin=/usr/lib/postgresql/{major}/bin; port={port}
psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "create table if not exists visio_verify_backup
  (token text primary key, written_at timestamptz not null default now())"
psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "insert into visio_verify_backup (token) values ('$token')"
tries=0
until pgbackrest --stanza=$stanza --type=incr --log-level-console=warn backup; do
  rc=$? tries=$((tries + 1))
  # 50: another backup holds the stanza's lock (a scheduled one, a restore drill): wait for it, 2 min at most.
  [ $rc -eq 50 ] && [ $tries -lt 60 ] || exit $rc
  sleep 2
done
scratch=$(mktemp -d /var/tmp/visio-verify-restore-XXXXXX)
trap '"$bin"/pg_ctl -D "$scratch" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
pgbackrest --stanza=$stanza --pg1-path="$scratch" --type=immediate --target-action=promote \
  --archive-mode=off --log-level-console=warn restore
: > "$scratch/postgresql.conf"
echo "local all postgres peer" > "$scratch/pg_hba.conf"
: > "$scratch/pg_ident.conf"
# Recovery refuses to start below the primary's values of these settings: take them from the primary.
hot=$(psql -XAt -d postgres -c "select string_agg(format('-c %s=%s', name, setting), ' ') from pg_settings
  where name in ('max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions',
                 'max_locks_per_transaction')")
"$bin"/pg_ctl -D "$scratch" -w -t 120 -l "$scratch/restore.log" -o "-p $port -c listen_addresses='' \
  -c unix_socket_directories='$scratch' -c archive_mode=off -c ssl=off $hot \
  -c hba_file='$scratch/pg_hba.conf' -c ident_file='$scratch/pg_ident.conf'" start >/dev/null \
  || {{ tail -n 5 "$scratch/restore.log" >&2; exit 1; }}
for i in $(seq 1 60); do
  [ "$(psql -XAt -h "$scratch" -p $port -d postgres -c 'select pg_is_in_recovery()')" = f ] && break
  sleep 1
done
psql -XAt -h "$scratch" -p $port -d postgres \
  -c "select count(*) from visio_verify_backup where token = '$token'"
psql -XAtq -d postgres -c "delete from visio_verify_backup where token = '$token'"
"""


def test_restore_into_a_scratch_instance_returns_the_data(primary, facts, config):
    token = secrets.token_hex(8)
    script = RESTORE_SCRIPT.format(stanza=_stanza(facts), token=token, major=config.versions.postgresql,
                                   port=SCRATCH_PORT)
    result = primary.host.run(f"runuser -u postgres -- bash -c {shlex.quote(script)}")
    assert result.rc == 0, f"{primary}: backup+restore failed ({result.rc}): {result.stderr.strip()[-600:]}"
    assert result.stdout.strip().splitlines()[-1:] == ["1"], (
        f"{primary}: the restored instance does not hold the row written before the backup "
        f"(got {result.stdout.strip()[-200:]!r})"
    )


def test_hardening_db_tls_settings(db_nodes, facts):
    """Every DB node's server refuses TLS below 1.2 and offers only the role's TLS 1.2 suites (ECDHE +
    AEAD); where the controller reaches 5432, `visio verify --hardening` also scans it with testssl.sh."""
    want = [facts["postgresql_tls_min_version"], facts["postgresql_tls12_ciphers"]]
    for node in db_nodes:
        shown = node.host.run(
            "runuser -u postgres -- psql -XAtc 'show ssl_min_protocol_version' -c 'show ssl_ciphers'"
        )
        assert shown.rc == 0, f"{node}: {shown.stderr.strip()[:300]}"
        assert shown.stdout.split() == want, f"{node}: server runs {shown.stdout.split()}, want {want}"
