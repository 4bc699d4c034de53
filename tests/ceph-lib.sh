# SPDX-License-Identifier: BSD-3-Clause
# A one-node Ceph cluster for tests (source this file): one ceph-mon and one ceph-osd on
# 127.0.0.1, memstore (everything in memory), pool "rbd" of size 1, no ceph-mgr (RBD I/O,
# `rbd create/import/export` and `rbd pool init` need none), authentication off. Everything lives
# in one temporary directory, with short socket paths (< 107 bytes).
#
#   ceph_start            start it; sets CEPH_DIR, CEPH_CONF (exported), CEPH_POOL=rbd
#   ceph_stop             stop both daemons, remove the directory (memstore: the data goes too)
#                         unless VHU_KEEP_TMP=1
#   ceph_skip_if_missing  exit 77 (SKIP) loudly when ceph-mon, ceph-osd or rbd is missing
#
# Readiness is a real `rbd` write and read of a probe image, not `ceph health` (without a mgr it
# turns HEALTH_WARN after a grace period). The fast paxos settings make a monitor change take
# milliseconds instead of a second each (~1-2 s to start instead of ~8 s).

ceph_skip_if_missing() {
  local b
  for b in ceph-mon ceph-osd ceph rbd monmaptool; do
    if ! command -v "$b" >/dev/null 2>&1; then
      echo "SKIP: $b not found: install ceph-mon ceph-osd ceph-common (scripts/deps.sh test)" >&2
      exit 77
    fi
  done
}

CEPH_DIR=
CEPH_MON_PID=
CEPH_OSD_PID=

ceph_log() { echo "ceph-lib: $*" >&2; }

# ceph CLI with a bounded wait (a command to a monitor that is not there blocks for minutes).
ceph_cli() { timeout 20 ceph --conf "$CEPH_CONF" --connect-timeout 10 "$@"; }

ceph_dump_logs() {
  local f
  for f in "$CEPH_DIR"/log/*.log; do
    [[ -f $f ]] || continue
    echo "---- $f (tail)" >&2
    tail -n 20 "$f" >&2
  done
}

ceph_stop() {
  local p
  # A throwaway memstore cluster: nothing to shut down gracefully.
  for p in $CEPH_OSD_PID $CEPH_MON_PID; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  CEPH_OSD_PID= CEPH_MON_PID=
  if [[ -n $CEPH_DIR && -d $CEPH_DIR ]]; then
    if [[ ${VHU_KEEP_TMP:-} == 1 ]]; then ceph_log "cluster dir kept: $CEPH_DIR (VHU_KEEP_TMP=1)"
    else rm -rf "$CEPH_DIR"; fi
  fi
  CEPH_DIR=
}

ceph_free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 30000))
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
      echo "$p"; return 0
    fi
  done
  return 1
}

ceph_start() {
  local t0=$SECONDS port fsid osd_uuid
  CEPH_DIR=$(mktemp -d /tmp/vc.XXXXXX)
  mkdir -p "$CEPH_DIR"/{mon,osd,run,log}
  port=$(ceph_free_port) || { ceph_log "no free port"; return 1; }
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  CEPH_CONF=$CEPH_DIR/ceph.conf
  CEPH_POOL=rbd
  export CEPH_CONF
  cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.\$pid.asok
log file = $CEPH_DIR/log/\$name.log
err to stderr = false
log to stderr = false
crash dir = $CEPH_DIR/run
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail crit = 1
mon data avail warn = 2
paxos propose interval = 0.05
paxos min wait = 0.01
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $CEPH_DIR/osd
mon data = $CEPH_DIR/mon
osd crush chooseleaf type = 0
osd op num shards = 1
osd op num threads per shard = 2
client mount timeout = 15
EOF
  monmaptool --create --addv a "[v2:127.0.0.1:$port]" --fsid "$fsid" "$CEPH_DIR/monmap" \
    >"$CEPH_DIR/log/monmaptool.out" 2>&1 || { cat "$CEPH_DIR/log/monmaptool.out" >&2; return 1; }
  if ! ceph-mon --conf "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
      >"$CEPH_DIR/log/mkfs-mon.out" 2>&1; then
    ceph_log "ceph-mon --mkfs failed:"; cat "$CEPH_DIR/log/mkfs-mon.out" >&2; return 1
  fi
  ceph-mon --conf "$CEPH_CONF" -i a -f >"$CEPH_DIR/log/mon.out" 2>&1 &
  CEPH_MON_PID=$!
  # The monitor answers on its admin socket before it binds: wait for a real command.
  local ok=
  for _ in $(seq 100); do
    if ceph_cli mon stat >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$CEPH_MON_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $ok ]] || { ceph_log "monitor did not come up"; ceph_dump_logs; return 1; }
  local id
  id=$(ceph_cli osd new "$osd_uuid" 2>"$CEPH_DIR/log/osd-new.err") ||
    { ceph_log "ceph osd new failed"; cat "$CEPH_DIR/log/osd-new.err" >&2; return 1; }
  if ! ceph-osd --conf "$CEPH_CONF" -i "$id" --mkfs --osd-uuid "$osd_uuid" \
      >"$CEPH_DIR/log/mkfs-osd.out" 2>&1; then
    ceph_log "ceph-osd --mkfs failed:"; cat "$CEPH_DIR/log/mkfs-osd.out" >&2; return 1
  fi
  ceph-osd --conf "$CEPH_CONF" -i "$id" -f >"$CEPH_DIR/log/osd.out" 2>&1 &
  CEPH_OSD_PID=$!
  ceph_cli osd pool create "$CEPH_POOL" 8 8 >/dev/null 2>"$CEPH_DIR/log/pool.err" &&
    ceph_cli osd pool set "$CEPH_POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1 ||
    { ceph_log "pool create failed"; cat "$CEPH_DIR/log/pool.err" >&2; return 1; }
  timeout 30 rbd --conf "$CEPH_CONF" pool init "$CEPH_POOL" 2>"$CEPH_DIR/log/pool-init.err" ||
    { ceph_log "rbd pool init failed"; cat "$CEPH_DIR/log/pool-init.err" >&2; ceph_dump_logs;
      return 1; }
  # Ready when a real write and read go through the OSD.
  ok=
  for _ in $(seq 100); do
    if printf 'vhu-ceph-probe' | timeout 10 rbd --conf "$CEPH_CONF" import - "$CEPH_POOL/probe" \
         >/dev/null 2>&1 &&
       [[ $(timeout 10 rbd --conf "$CEPH_CONF" export "$CEPH_POOL/probe" - 2>/dev/null) == \
          vhu-ceph-probe ]]; then
      ok=1; break
    fi
    kill -0 "$CEPH_OSD_PID" 2>/dev/null || break
    timeout 10 rbd --conf "$CEPH_CONF" rm "$CEPH_POOL/probe" >/dev/null 2>&1 || true
    sleep 0.2
  done
  [[ -n $ok ]] || { ceph_log "no rbd write+read through the OSD"; ceph_dump_logs; return 1; }
  timeout 10 rbd --conf "$CEPH_CONF" rm "$CEPH_POOL/probe" >/dev/null 2>&1 || true
  ceph_log "cluster up in $((SECONDS - t0)) s ($CEPH_DIR)"
}
