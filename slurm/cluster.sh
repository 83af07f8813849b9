#!/usr/bin/env bash
# A real single-host Slurm cluster for tests and trials: slurmctld, two slurmd (node1,
# node2: two hosts as far as Slurm and torch know), slurmdbd with MariaDB (so sacct
# answers) and munge. Every config, state file, socket and log lives under DIR.
# Each node declares 2 GPUs as GRES (gpu:2) on device files made for the purpose (null
# devices: there is no GPU), so Slurm itself deals --gpus-per-task / --gres: distinct indices
# per task, CUDA_VISIBLE_DEVICES and SLURM_STEP_GPUS as on a DGX, gres/gpu in sacct's TRES.
# Training still runs on the CPU.
#
#   slurm/cluster.sh start DIR    idempotent; returns when sinfo shows both nodes idle
#   slurm/cluster.sh stop DIR     stops what start recorded (by PID, never by name)
#   slurm/cluster.sh env DIR      prints the exports a client shell needs (SLURM_CONF)
#   slurm/cluster.sh stop-dbd DIR stops only slurmdbd (to test status without accounting)
#   slurm/cluster.sh stop-ctld / start-ctld DIR   restarts slurmctld alone (fault tests)
#   slurm/cluster.sh stop-node / start-node DIR NODE   stops / starts one slurmd (NODE_FAIL tests)
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop|env|stop-dbd|start-dbd|stop-ctld|start-ctld|stop-node|start-node DIR [NODE]}
dir=$(mkdir -p "${2:?usage: cluster.sh start|stop|env|stop-dbd DIR}" && cd "$2" && pwd)
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf
db_port=${MRIHPC_TEST_DB_PORT:-13306}
dbd_port=${MRIHPC_TEST_DBD_PORT:-16819}
ctld_port=${MRIHPC_TEST_CTLD_PORT:-16817}

alive() { [[ -f $dir/run/$1.pid ]] && kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null; }

launch() {  # name, command...: run in the foreground under setsid, remember the PID
  local name=$1; shift
  alive "$name" && return 0
  setsid "$@" >>"$dir/log/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

wait_for() {  # seconds, description, test command...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "cluster.sh: $what did not come up in ${seconds}s; logs in $dir/log" >&2
  tail -n 20 "$dir"/log/*.log "$dir"/log/*.out 2>/dev/null >&2 || true
  return 1
}

write_configs() {
  mkdir -p "$dir"/{etc,run,log,state/ctld,state/node1,state/node2,munge,mysql,dev}
  local n g
  for n in node1 node2; do
    for g in 0 1; do  # GPU device files of each node (a null device's numbers: nothing to drive)
      [[ -c $dir/dev/$n-nvidia$g ]] || { rm -f "$dir/dev/$n-nvidia$g"; mknod "$dir/dev/$n-nvidia$g" c 1 3; }
    done
  done
  chmod 755 "$dir" "$dir/munge"  # munged refuses a socket folder that is not world-executable
  [[ -f $dir/munge/munge.key ]] || { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null; chmod 400 "$dir/munge/munge.key"; }
  local sock=$dir/munge/munge.socket host; host=$(hostname)
  cat >"$conf" <<CONF
ClusterName=mrihpc
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=10
StateSaveLocation=$dir/state/ctld
SlurmdSpoolDir=$dir/state/%n
SlurmctldPidFile=$dir/run/slurmctld.daemon.pid
SlurmdPidFile=$dir/run/slurmd-%n.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# memory limits enforced without cgroups: each step's RSS polled every second, and a step over
# its --mem killed (OUT_OF_MEMORY), as a site's cgroups would
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
# memory is a consumable resource, so a step has a limit to enforce; 2 GB per CPU by default
# (two single-CPU points per node, as CPUs alone allow)
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
GresTypes=gpu
AccountingStorageTRES=gres/gpu
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=1,batch_sched_delay=0
JobRequeue=1
MaxArraySize=1001
# cancelled arrays stay MinJobAge seconds: the 10,000-point submission benchmark needs room
MaxJobCount=200000
KillWait=10
# a node whose slurmd stops answering is DOWN within ~15 s (fault tests: NODE_FAIL)
SlurmdTimeout=10
InactiveLimit=0
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$sock
NodeName=node1 NodeHostname=$host NodeAddr=127.0.0.1 Port=16821 CPUs=2 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
NodeName=node2 NodeHostname=$host NodeAddr=127.0.0.1 Port=16822 CPUs=2 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=short Nodes=node1 MaxTime=00:30:00 State=UP OverSubscribe=NO
CONF
  cat >"$dir/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$dir/run/slurmdbd.daemon.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=root
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$dir/etc/slurmdbd.conf"
  cat >"$dir/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=node1 Name=gpu File=$dir/dev/node1-nvidia[0-1]
NodeName=node2 Name=gpu File=$dir/dev/node2-nvidia[0-1]
CONF
  touch "$dir/etc/cgroup.conf"
  # node names must resolve (torch's rendezvous uses the first node's name)
  grep -qE '^127\.0\.0\.1[[:space:]].*\bnode1\b' /etc/hosts || echo "127.0.0.1 node1 node2" >>/etc/hosts
}

start() {
  write_configs
  launch munged /usr/sbin/munged -F --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/run/munged.daemon.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
  wait_for 10 munged test -S "$dir/munge/munge.socket"
  if [[ ! -d $dir/mysql/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$dir/mysql" --user=root --auth-root-authentication-method=normal \
      --skip-test-db >"$dir/log/mysql-install.log" 2>&1
  fi
  launch mariadb /usr/sbin/mariadbd --no-defaults --datadir="$dir/mysql" --user=root --bind-address=127.0.0.1 \
    --port="$db_port" --socket="$dir/run/mysql.sock" --pid-file="$dir/run/mariadb.daemon.pid" \
    --log-error="$dir/log/mariadb.log" --innodb-buffer-pool-size=32M
  wait_for 30 mariadb mariadb --no-defaults -uroot -h127.0.0.1 -P"$db_port" -e "select 1"
  launch slurmdbd /usr/sbin/slurmdbd -D  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$dbd_port"
  sacctmgr -i add cluster mrihpc >/dev/null 2>&1 || true
  launch slurmctld /usr/sbin/slurmctld -D -i -f "$conf"
  wait_for 30 slurmctld scontrol ping
  launch slurmd-node1 /usr/sbin/slurmd -D -N node1 -f "$conf"
  launch slurmd-node2 /usr/sbin/slurmd -D -N node2 -f "$conf"
  # jobs recovered from an earlier life of the cluster (its processes are gone) block nodes
  squeue -h -o %A 2>/dev/null | sort -u | xargs -r scancel 2>/dev/null || true
  wait_for 60 "both nodes idle" bash -c '[[ $(sinfo -h -o "%t" -n node1,node2 | sort -u) == idle ]]'
  echo "cluster up: export SLURM_CONF=$conf"
}

stop_one() {
  local name=$1 pid
  [[ -f $dir/run/$name.pid ]] || return 0
  pid=$(cat "$dir/run/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/run/$name.pid"
}

case $cmd in
  start) start ;;
  stop)
    if alive slurmctld; then  # end every job first, so no slurmstepd outlives its slurmd
      squeue -h -o %A 2>/dev/null | sort -u | xargs -r scancel 2>/dev/null || true
      for _ in $(seq 300); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.1; done
    fi
    for n in slurmd-node2 slurmd-node1 slurmctld slurmdbd mariadb munged; do stop_one "$n"; done ;;
  stop-dbd) stop_one slurmdbd ;;
  start-dbd) launch slurmdbd /usr/sbin/slurmdbd -D  # reads slurmdbd.conf beside $SLURM_CONF
             wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$dbd_port" ;;
  stop-ctld) stop_one slurmctld ;;
  start-ctld) launch slurmctld /usr/sbin/slurmctld -D -i -f "$conf"  # keeps its saved state: jobs survive
              wait_for 30 slurmctld scontrol ping ;;
  stop-node) stop_one "slurmd-${3:?which node}" ;;  # its jobs' processes are the caller's to kill
  start-node) launch "slurmd-${3:?which node}" /usr/sbin/slurmd -D -N "$3" -f "$conf" ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) echo "usage: cluster.sh start|stop|env|stop-dbd|start-dbd DIR" >&2; exit 2 ;;
esac
