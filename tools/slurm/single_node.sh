#!/usr/bin/env bash
# A single-node SLURM cluster with accounting on this machine, for the real-SLURM test
# (tests/slurm/) and for trying workflows/profiles/slurm by hand. Needs root (apt-get,
# daemons). Debian packages: slurm-wlm (slurmctld + slurmd), slurmdbd, mariadb-server, munge;
# installed with apt-get when absent.
#
#   tools/slurm/single_node.sh start    # install if needed, start munged, MariaDB, slurmdbd,
#                                       # slurmctld, slurmd; add cluster, account, user
#   tools/slurm/single_node.sh env      # the SLURM_CONF line to export for sbatch/sacct/snakemake
#   tools/slurm/single_node.sh status   # sinfo + sacctmgr view
#   tools/slurm/single_node.sh stop     # stop the daemons this script started
#
# Everything lives under $SLURM_STATE (default /var/tmp/timerome-slurm): slurm.conf,
# slurmdbd.conf, gres.conf, spool, logs, pid files. Clients find this cluster through
# SLURM_CONF=$SLURM_STATE/slurm.conf (`eval "$(tools/slurm/single_node.sh env)"`); inside a
# batch job SLURM drops SLURM_CONF, so `srun` there reads the compiled-in
# /etc/slurm/slurm.conf: the script links it to this cluster's file when no such file exists
# (and removes only that link on stop), and refuses to start over another cluster's file.
#
# The node advertises $SLURM_FAKE_GPUS (default 2) GPUs as GRES backed by character devices
# made here (copies of /dev/null), so `--gpus=N` requests, GPU accounting (sacct AllocTRES)
# and SLURM's per-job CUDA_VISIBLE_DEVICES can be exercised without a GPU; set it to 0 to
# advertise none.
set -euo pipefail

STATE=${SLURM_STATE:-/var/tmp/timerome-slurm}
CLUSTER=${SLURM_CLUSTER_NAME:-timerome}
ACCOUNT=${SLURM_TEST_ACCOUNT:-bench}
PARTITION=${SLURM_TEST_PARTITION:-debug}
FAKE_GPUS=${SLURM_FAKE_GPUS:-2}
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=${SLURM_DB_PASS:-timerome-slurm-test}
PACKAGES=(slurm-wlm slurmdbd mariadb-server munge)
CONF="$STATE/slurm.conf"
NODE=$(hostname -s)

log() { echo "[single_node] $*" >&2; }
die() { echo "[single_node] error: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (apt-get, daemons)"; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 "$limit"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    die "$what did not come up within ${limit}s (logs: $STATE/log)"
}

start_munge() {
    if munge -n </dev/null >/dev/null 2>&1; then return 0; fi
    [ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; }
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/started.munge"
    wait_for 20 munged munge -n
}

start_mariadb() {
    if ! mysqladmin ping >/dev/null 2>&1; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        /etc/init.d/mariadb start >"$STATE/log/mariadb-start.log" 2>&1 \
            || die "MariaDB did not start ($STATE/log/mariadb-start.log)"
        touch "$STATE/started.mariadb"
        wait_for 60 MariaDB mysqladmin ping
    fi
    mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
}

write_configs() {
    local cpus mem gres_node="" gres_types=""
    cpus=$(nproc)
    # Memory SLURM may hand out: all but 1 GiB, so that --mem requests are enforced against
    # what the machine has.
    mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
    mkdir -p "$STATE"/{ctld,spool,log}
    if [ "$FAKE_GPUS" -gt 0 ]; then
        mkdir -p "$STATE/dev"
        : >"$STATE/gres.conf"
        for i in $(seq 0 $((FAKE_GPUS - 1))); do
            [ -c "$STATE/dev/fakegpu$i" ] || mknod "$STATE/dev/fakegpu$i" c 1 3
        done
        echo "NodeName=$NODE Name=gpu File=$STATE/dev/fakegpu[0-$((FAKE_GPUS - 1))]" \
            >"$STATE/gres.conf"
        gres_node="Gres=gpu:$FAKE_GPUS"
        gres_types="GresTypes=gpu"
    fi
    cat >"$CONF" <<EOF
# Written by tools/slurm/single_node.sh: a one-node test cluster with accounting.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/slurmdbd.conf" <<EOF
# Written by tools/slurm/single_node.sh.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
EOF
    chmod 600 "$STATE/slurmdbd.conf"
    # No systemd in a container: slurmd finds the cgroup version itself (22.05 has no
    # 'disabled' plugin); the job plugins above (linuxproc, task/none) use no cgroup.
    link_system_conf
    printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' >"$STATE/cgroup.conf"
}

SYSTEM_CONF=/etc/slurm/slurm.conf

link_system_conf() {
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then return 0; fi
    [ -e "$SYSTEM_CONF" ] && die "$SYSTEM_CONF exists and is not this test cluster's; not touching it"
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_slurm() {
    export SLURM_CONF="$CONF"
    if ! pid_alive "$STATE/slurmdbd.pid"; then
        slurmdbd
        wait_for 60 slurmdbd sacctmgr -n list cluster
    fi
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
        description="timerome-bench test account" >/dev/null 2>&1 || true
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null 2>&1 || true
    if ! pid_alive "$STATE/slurmctld.pid"; then
        slurmctld
        wait_for 60 slurmctld scontrol ping
    fi
    if ! pid_alive "$STATE/slurmd.pid"; then
        slurmd
    fi
    wait_for 60 "node $NODE" bash -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
    sacctmgr -n -p list assoc user=root account="$ACCOUNT" | grep -q "$ACCOUNT" \
        || die "no association for root in account $ACCOUNT"
}

stop_pidfile() {
    local pidfile=$1
    if pid_alive "$pidfile"; then
        local pid; pid=$(cat "$pidfile")
        kill "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

cmd_start() {
    need_root
    install_packages
    mkdir -p "$STATE/log"
    start_munge
    start_mariadb
    write_configs
    start_slurm
    log "up: cluster $CLUSTER, partition $PARTITION, account $ACCOUNT, $(nproc) CPUs," \
        "$FAKE_GPUS fake GPUs; export SLURM_CONF=$CONF"
}

cmd_stop() {
    for d in slurmd slurmctld slurmdbd; do stop_pidfile "$STATE/$d.pid"; done
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        rm -f "$SYSTEM_CONF"
    fi
    if [ -e "$STATE/started.mariadb" ]; then
        /etc/init.d/mariadb stop >/dev/null 2>&1 || true
        rm -f "$STATE/started.mariadb"
    fi
    if [ -e "$STATE/started.munge" ]; then
        stop_pidfile /run/munge/munged.pid
        rm -f "$STATE/started.munge"
    fi
    log "stopped"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    status) SLURM_CONF="$CONF" sinfo; SLURM_CONF="$CONF" sacctmgr -n list assoc format=cluster,account,user ;;
    *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
