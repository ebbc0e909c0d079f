#!/usr/bin/env bash
# Stage 2, run INSIDE the booted machine (systemd PID 1, its own network namespace at $OSC_IP) by
# scripts/openstack-cloud.sh, once per cached root: databases, RabbitMQ, Keystone, every service's
# configuration, database syncs, catalog, the 4 compute hosts, the cloud's content, a self-check,
# then the seal (services stopped, heartbeats aged) before the host powers the machine off.
#
# Every password and the fixed encryption key are generated here, randomly, and written only where
# a service reads them (its /etc config, root-only clouds.yaml); none is printed or put on a command
# line (crudini and mysql read them from standard input, keystone-manage from its environment).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
set -a
# shellcheck source=cloud.env
. "$HERE/cloud.env"
set +a
T0=$SECONDS
step() { echo "[setup +$((SECONDS - T0))s] $*"; }
KS=http://$OSC_IP:5000
SERVICES=(glance placement nova neutron cinder)
# All OpenStack units but keystone, in start order (extra compute hosts are added below).
UNITS=(glance-api placement-api nova-api nova-conductor nova-scheduler nova-compute neutron-api
       neutron-rpc-server neutron-linuxbridge-agent neutron-dhcp-agent neutron-l3-agent
       cinder-api cinder-scheduler cinder-volume)
FAKE_HOSTS=()
for i in $(seq 2 $((OSC_FAKE_HOSTS + 1))); do FAKE_HOSTS+=("$i"); done
for i in "${FAKE_HOSTS[@]}"; do UNITS+=("nova-compute@$i" "neutron-linuxbridge-agent@$i"); done

# --- secrets ------------------------------------------------------------------------------------
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 077
export OSC_ADMIN_PASSWORD OSC_MEMBER_PASSWORD
OSC_ADMIN_PASSWORD=$(hex 24) OSC_MEMBER_PASSWORD=$(hex 24)
RABBIT_PASSWORD=$(hex 24)
FIXED_KEY=$(hex 32)            # 256 bits, 64 hex digits: the ConfKeyManager key of Cinder and Nova
declare -A DB_PASSWORD USER_PASSWORD
for s in keystone "${SERVICES[@]}"; do DB_PASSWORD[$s]=$(hex 24); done
for s in "${SERVICES[@]}"; do
  USER_PASSWORD[$s]=$(hex 24)
  export "OSC_PASSWORD_${s^^}=${USER_PASSWORD[$s]}"   # read by provision.py identity
done
umask 022
TRANSPORT="rabbit://openstack:$RABBIT_PASSWORD@127.0.0.1:5672/"
db_url() { echo "mysql+pymysql://$1:${DB_PASSWORD[$1]}@127.0.0.1/$2?charset=utf8"; }

ini() { crudini --merge "$1"; }   # INI text on stdin merged into file $1 (values never in argv)

# `systemctl enable` of a Debian unit also runs update-rc.d for its init script (seconds each, 20
# units): link the units into multi-user.target directly, as their [Install] sections say.
enable_now() {
  local unit file
  for unit in "$@"; do
    file=/etc/systemd/system/${unit%%@*}@.service
    [[ "$unit" == *@* ]] || file=/lib/systemd/system/$unit.service
    ln -sf "$file" "/etc/systemd/system/multi-user.target.wants/$unit.service"
  done
  systemctl daemon-reload
  systemctl start "$@"
}
authtoken() { # user: the [keystone_authtoken] section of a service
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = ${USER_PASSWORD[$1]}
region_name = $OSC_REGION
EOF
}
svcauth() { # section user: a client section authenticating as a service user
  cat <<EOF
[$1]
auth_type = password
auth_url = $KS/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = ${USER_PASSWORD[$2]}
region_name = $OSC_REGION
EOF
}
# Every API but Glance runs under uwsgi with Debian's `rem-header = Content-Length`: after a 204 the
# client reuses a keep-alive socket uwsgi closes ("Connection reset by peer" on server delete), so
# tell clients not to. Eventlet-based APIs (nova, neutron, cinder) need threads = 1 (neutron with 4:
# "greenlet.error: cannot switch to a different thread", a router gateway update hung).
uwsgi_tune() { # file processes threads
  [ -f "$1" ] || return 0
  sed -i -e "s/^processes = .*/processes = $2/" -e "s/^threads = .*/threads = $3/" "$1"
  grep -q '^add-header = Connection: close' "$1" || sed -i '/^\[uwsgi\]/a add-header = Connection: close' "$1"
}

# --- MariaDB, RabbitMQ --------------------------------------------------------------------------
step "MariaDB and RabbitMQ"
cat >/etc/mysql/mariadb.conf.d/99-visio-openstack.cnf <<'EOF'
# A throw-away test cloud: many service connections, durability traded for speed.
[mysqld]
bind-address = 127.0.0.1
max_connections = 1000
skip-name-resolve
innodb_flush_log_at_trx_commit = 2
EOF
systemctl enable --now mariadb rabbitmq-server
for s in keystone "${SERVICES[@]}"; do
  dbs=$s; [ "$s" = nova ] && dbs="nova nova_api nova_cell0"
  for db in $dbs; do
    printf "CREATE DATABASE IF NOT EXISTS %s;\nGRANT ALL ON %s.* TO '%s'@'127.0.0.1' IDENTIFIED BY '%s';\n" \
      "$db" "$db" "$s" "${DB_PASSWORD[$s]}"
  done
done | mysql
rabbitmqctl -q await_startup
printf '%s' "$RABBIT_PASSWORD" | rabbitmqctl -q add_user openstack >/dev/null
rabbitmqctl -q set_permissions openstack '.*' '.*' '.*'
rabbitmqctl -q delete_user guest

# --- configuration files ------------------------------------------------------------------------
step "Keystone"
crudini --del /etc/keystone/keystone.conf catalog template_file
ini /etc/keystone/keystone.conf <<EOF
[database]
connection = $(db_url keystone keystone)
[token]
provider = fernet
[identity]
# bcrypt's default 12 rounds cost ~0.25 s of CPU per password login; every service process logs in
# at boot and every test client at start. 4 rounds: a test cloud's random passwords need no more.
password_hash_rounds = 4
EOF
uwsgi_tune /etc/keystone/keystone-uwsgi.ini 1 4
su -s /bin/sh -c "keystone-manage db_sync" keystone
keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone
keystone-manage credential_setup --keystone-user keystone --keystone-group keystone
OS_BOOTSTRAP_PASSWORD=$OSC_ADMIN_PASSWORD keystone-manage bootstrap \
  --bootstrap-admin-url "$KS/v3/" --bootstrap-internal-url "$KS/v3/" --bootstrap-public-url "$KS/v3/" \
  --bootstrap-region-id "$OSC_REGION"
enable_now keystone

step "service configuration"
# oslo.db retries a refused connection every 10 s by default: at boot MariaDB may be a second late.
DB_RETRY=$'max_retries = -1\nretry_interval = 1'
# RPC queues that survive the power-off: at boot an agent's first call (the L3 agent's, a compute's
# ping of the conductor) waits in its queue until the server consumes it, instead of being dropped
# by an exchange with no queue yet and timing out (60 s, then a backoff of up to 60 s more).
DURABLE=$'[oslo_messaging_rabbit]\namqp_durable_queues = true'

# Debian runs glance-api on its own (eventlet, one worker per CPU by default), not under uwsgi.
ini /etc/glance/glance-api.conf <<EOF
[DEFAULT]
workers = 1
enabled_backends = file:file
[database]
connection = $(db_url glance glance)
$DB_RETRY
$(authtoken glance)
[paste_deploy]
flavor = keystone
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = /var/lib/glance/images/
EOF

ini /etc/placement/placement.conf <<EOF
[placement_database]
connection = $(db_url placement placement)
$DB_RETRY
[api]
auth_strategy = keystone
$(authtoken placement)
EOF
uwsgi_tune /etc/placement/placement-api-uwsgi.ini 1 4

ini /etc/nova/nova.conf <<EOF
$DURABLE
[DEFAULT]
transport_url = $TRANSPORT
my_ip = $OSC_IP
enabled_apis = osapi_compute
[api]
auth_strategy = keystone
[api_database]
connection = $(db_url nova nova_api)
$DB_RETRY
[database]
connection = $(db_url nova nova)
$DB_RETRY
$(authtoken nova)
$(svcauth service_user nova)
send_service_user_token = true
$(svcauth placement placement)
$(svcauth neutron neutron)
$(svcauth cinder cinder)
os_region_name = $OSC_REGION
[glance]
api_servers = http://$OSC_IP:9292
[vnc]
enabled = false
[spice]
enabled = false
[scheduler]
workers = 1
[conductor]
workers = 1
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[key_manager]
backend = nova.keymgr.conf_key_mgr.ConfKeyManager
fixed_key = $FIXED_KEY
EOF
crudini --del /etc/nova/nova.conf neutron service_metadata_proxy
ini /etc/nova/nova-compute.conf <<EOF
[DEFAULT]
compute_driver = fake.FakeDriver
reserved_host_memory_mb = 0
EOF
uwsgi_tune /etc/nova/nova-api-uwsgi.ini 2 1

ini /etc/neutron/neutron.conf <<EOF
$DURABLE
[DEFAULT]
transport_url = $TRANSPORT
core_plugin = ml2
service_plugins = router
interface_driver = linuxbridge
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
[experimental]
linuxbridge = true
[agent]
# Agents report every 30 s by default; a report lost while the server starts costs 30 s at boot.
report_interval = 10
[database]
connection = $(db_url neutron neutron)
$DB_RETRY
$(authtoken neutron)
$(svcauth nova nova)
[oslo_concurrency]
lock_path = /var/lib/neutron/tmp
EOF
ini /etc/neutron/plugins/ml2/ml2_conf.ini <<EOF
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = linuxbridge
extension_drivers = port_security
[ml2_type_flat]
flat_networks = external
[ml2_type_vxlan]
vni_ranges = 1:1000
EOF
ini /etc/neutron/plugins/ml2/linuxbridge_agent.ini <<EOF
[linux_bridge]
bridge_mappings = external:brex
[vxlan]
enable_vxlan = true
local_ip = $OSC_IP
l2_population = false
[securitygroup]
enable_security_group = true
firewall_driver = iptables
EOF
ini /etc/neutron/dhcp_agent.ini <<EOF
[DEFAULT]
interface_driver = linuxbridge
enable_isolated_metadata = false
EOF
# No metadata agent in this cloud: no haproxy per router either.
ini /etc/neutron/l3_agent.ini <<EOF
[DEFAULT]
interface_driver = linuxbridge
enable_metadata_proxy = false
EOF
uwsgi_tune /etc/neutron/neutron-api-uwsgi.ini 2 1

# No device-mapper in this kernel, so no LVM: Cinder's fake backend (shipped in python3-cinder).
crudini --del /etc/cinder/cinder.conf lvm
ini /etc/cinder/cinder.conf <<EOF
$DURABLE
[DEFAULT]
transport_url = $TRANSPORT
my_ip = $OSC_IP
glance_api_servers = http://$OSC_IP:9292
enabled_backends = fake
auth_strategy = keystone
[database]
connection = $(db_url cinder cinder)
$DB_RETRY
$(authtoken cinder)
$(svcauth nova nova)
[fake]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
[key_manager]
backend = cinder.keymgr.conf_key_mgr.ConfKeyManager
fixed_key = $FIXED_KEY
[oslo_concurrency]
lock_path = /var/lib/cinder/tmp
EOF
uwsgi_tune /etc/cinder/cinder-api-uwsgi.ini 2 1

# The extra fake compute hosts: one nova-compute and one linuxbridge agent (noop firewall) per host
# name, so strict anti-affinity can place up to 4 servers and Neutron binds their ports.
install -m 0644 "$HERE/units/nova-compute@.service" "$HERE/units/neutron-linuxbridge-agent@.service" \
  /etc/systemd/system/
for i in "${FAKE_HOSTS[@]}"; do
  printf '[DEFAULT]\nhost = %s-%s\n' "$OSC_MACHINE" "$i" >/etc/nova/fakehost-$i.conf
  printf '[DEFAULT]\nhost = %s-%s\n[securitygroup]\nfirewall_driver = noop\n' "$OSC_MACHINE" "$i" \
    >/etc/neutron/fakehost-$i.conf
done
# At boot ~25 Python services start at once on 2 shared cores. The servers the others wait for
# (tokens, conductor RPC, agent reports) get the CPU first, so the clients' first calls succeed.
for unit in keystone nova-conductor neutron-rpc-server placement-api; do
  mkdir -p "/etc/systemd/system/$unit.service.d"
  printf '[Service]\nNice=-10\n' >"/etc/systemd/system/$unit.service.d/10-visio-openstack.conf"
done
systemctl daemon-reload
# Service configs hold passwords: readable by their service only.
for s in glance nova neutron cinder placement keystone; do
  find "/etc/$s" -type f \( -name '*.conf' -o -name '*.ini' \) -exec chgrp "$s" {} + -exec chmod 0640 {} +
done

# --- databases (in parallel with the Keystone catalog) --------------------------------------------
step "database syncs (background) and Keystone catalog"
as() { su -s /bin/sh -c "$2" "$1"; }
mkdir -p /var/log/visio-openstack
( as glance "glance-manage db_sync"
  as placement "placement-manage db sync"
  as cinder "cinder-manage db sync" ) >/var/log/visio-openstack/dbsync-1.log 2>&1 & SYNC1=$!
( as neutron "neutron-db-manage --config-file /etc/neutron/neutron.conf \
    --config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head" ) >/var/log/visio-openstack/dbsync-2.log 2>&1 & SYNC2=$!
( as nova "nova-manage api_db sync"
  as nova "nova-manage cell_v2 map_cell0"
  as nova "nova-manage cell_v2 create_cell --name=cell1"
  as nova "nova-manage db sync" ) >/var/log/visio-openstack/dbsync-3.log 2>&1 & SYNC3=$!
python3 "$HERE/provision.py" identity
for job in $SYNC1 $SYNC2 $SYNC3; do
  wait "$job" || { tail -20 /var/log/visio-openstack/dbsync-*.log; exit 1; }
done

# --- services ---------------------------------------------------------------------------------------
step "starting ${#UNITS[@]} services"
enable_now "${UNITS[@]}"
step "cloud content: image, flavors, volume types, external network"
python3 "$HERE/provision.py" content
step "waiting for every service (and mapping the 4 compute hosts)"
python3 "$HERE/ready.py" --wait --timeout 900
step "self-check: an encrypted volume as the member user"
python3 "$HERE/provision.py" selfcheck

# --- seal -------------------------------------------------------------------------------------------
# The cached root must not look alive when it boots again: stop the services, then age every
# heartbeat so that `up` waits for real reports (Nova, Cinder: service_down_time 60 s; Neutron:
# agent_down_time 75 s; a quick down/up would otherwise count the build's heartbeats).
step "seal: stop services, age heartbeats, empty logs"
systemctl stop "${UNITS[@]}" keystone
mysql <<'EOF'
UPDATE nova.services SET last_seen_up = '2000-01-01 00:00:00', updated_at = '2000-01-01 00:00:00';
UPDATE cinder.services SET updated_at = '2000-01-01 00:00:00';
UPDATE neutron.agents SET heartbeat_timestamp = '2000-01-01 00:00:00';
EOF
find /var/log -type f -name '*.log' -exec truncate -s 0 {} +
step "done"
