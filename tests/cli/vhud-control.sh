#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vhud --control (issue 14, item 4): one daemon, devices added and removed over JSON-RPC.
#   - vhuctl --control: device-add (blk, rng, net, switch), list, stats, blk-resize, log-level,
#     device-remove; a real request through added devices (blk verify, rng read) shows in stats;
#   - the same over raw JSON lines (python3), and hostile input: deep nesting, huge numbers,
#     wrong types, unknown methods, a 1 MB line, invalid UTF-8, batches, more clients than
#     allowed, a client that never reads: each gets an error reply (or is closed), the daemon
#     keeps serving, and its fd count and memory are the same after 1000 bad requests;
#   - `vhud blk ... --control PATH`: the command line's device is there as id "blk".
#
#   vhud-control.sh VHUD VHUCTL
set -euo pipefail
VHUD=$1 VHUCTL=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
ctl=$dir/ctl.sock

c() { "$VHUCTL" --control "$ctl" "$@"; }
fds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

# --- an empty daemon, devices added with vhuctl
start_vhud_on "$ctl" --control "$ctl"
[[ $(c list | wc -l) == 1 ]] || fail "an empty daemon lists devices"
truncate -s 64M "$dir/disk.img"
c device-add blk d0 --socket-path "$dir/d0.sock" --file "$dir/disk.img" --num-queues 2 \
  >/dev/null || fail "device-add blk"
c device-add rng r0 --socket-path "$dir/r0.sock" >/dev/null || fail "device-add rng"
c device-add blk d2 --socket-path "$dir/d2.sock" --null 1M --poll-us 20 >/dev/null ||
  fail "device-add blk --poll-us"
c device-add blk d3 --socket-path "$dir/d3.sock" --null 1M --poll-max-us 0 >/dev/null ||
  fail "device-add blk --poll-max-us 0"
c device-add net n0 --socket-path "$dir/n0.sock" --reflect --queue-pairs 2 >/dev/null ||
  fail "device-add net"
c device-add switch s0 --port "$dir/p0.sock" --port "$dir/p1.sock" >/dev/null ||
  fail "device-add switch"
for s in d0 r0 n0 p0 p1; do [[ -S $dir/$s.sock ]] || fail "no socket $s.sock"; done
c list >"$dir/list"
for id in d0 r0 n0 s0; do grep -q "^$id " "$dir/list" || fail "list misses $id"; done

# usage and device errors: exit 1 with the daemon's reason, nothing added
rc=0; c device-add blk d0 --socket-path "$dir/x.sock" --null 1M 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "exists" "$dir/err" || fail "duplicate id: rc $rc, $(cat "$dir/err")"
rc=0; c device-add blk d1 --socket-path "$dir/x.sock" --tap x 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "'tap'" "$dir/err" || fail "another type's option: $(cat "$dir/err")"
rc=0; c device-add blk d1 --socket-path "$dir/x.sock" 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "no backing store" "$dir/err" || fail "no store: $(cat "$dir/err")"
rc=0; c device-add blk d1 --socket-path "$dir/x.sock" --null 1M --fd 3 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "'fd'" "$dir/err" || fail "--fd over the socket: $(cat "$dir/err")"
rc=0; c device-add blk d1 --socket-path "$dir/nodir/x.sock" --null 1M 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "cannot start" "$dir/err" || fail "bad path: $(cat "$dir/err")"
rc=0; c device-add floppy f0 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "unknown device type" "$dir/err" || fail "unknown type: $(cat "$dir/err")"
rc=0; c device-add blk 'bad/id' --null 1M 2>"$dir/err" || rc=$?
((rc == 1)) || fail "a bad id was taken"
rc=0; c device-add blk d1 --socket-path "$dir/x.sock" --null 1M --poll-us 5 --poll-max-us 9 \
  2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "one of --poll-us and --poll-max-us" "$dir/err" ||
  fail "both polling options: $(cat "$dir/err")"
rc=0; c frobnicate 2>"$dir/err" || rc=$?
((rc == 2)) || fail "an unknown control command exited $rc"
[[ $(c list | wc -l) == 8 ]] || fail "a failed device-add left something: $(c list)"

# --- real requests through the added devices, seen in stats
"$VHUCTL" blk verify --socket-path "$dir/d0.sock" --force >/dev/null 2>&1 || fail "blk verify on d0"
"$VHUCTL" rng read --socket-path "$dir/r0.sock" --bytes 65536 >/dev/null || fail "rng read on r0"
"$VHUCTL" blk bench --socket-path "$dir/d3.sock" --iodepth 4 --runtime 1 >/dev/null 2>&1 ||
  fail "blk bench on d3"
c stats --json >"$dir/stats.json"
python3 - "$dir/stats.json" <<'EOF' || fail "stats: $(cat "$dir/stats.json")"
import json, sys
devs = {d["id"]: d for d in json.load(open(sys.argv[1]))["devices"]}
q = devs["d0"]["ports"][0]["queues"]
assert len(q) == 2 and q[0]["requests"] > 0 and q[0]["in_bytes"] > 0 and q[0]["out_bytes"] > 0, q
# verify's out-of-range read is an I/O error the device reports (counted), not a ring break
assert q[0]["kicks"] > 0 and q[0]["calls"] > 0 and q[0]["errors"] >= 1 and q[0]["breaks"] == 0, q
assert 0.0 <= q[0]["polling_share"] <= 1.0, q
r = devs["r0"]["ports"][0]["queues"][0]
assert r["requests"] >= 16 and r["in_bytes"] == 65536, r
assert devs["d0"]["ports"][0]["sessions"] == 1
assert len(devs["s0"]["ports"]) == 2 and "switch" in devs["s0"]
assert "net" in devs["n0"]["ports"][0]["queues"][0]
# blk polls by default, adaptively (a window of at most 32 us that verify's requests moved);
# --poll-us is a fixed window; rng has no workers
w = devs["d0"]["ports"][0]["workers"]
assert len(w) == 1 and w[0]["poll_window_ns"] <= 32000, w
assert w[0]["poll_hits"] + w[0]["poll_misses"] > 0 and w[0]["sleeps"] > 0, w
w = devs["d2"]["ports"][0]["workers"]
assert len(w) == 1 and w[0]["poll_window_ns"] == 20000, w
assert devs["r0"]["ports"][0]["workers"] == [], devs["r0"]
# --poll-max-us 0: blk's worker never polls, it sleeps after every piece of work
w = devs["d3"]["ports"][0]["workers"]
assert len(w) == 1 and w[0]["poll_window_ns"] == 0, w
assert w[0]["poll_hits"] == 0 and w[0]["poll_misses"] == 0 and w[0]["sleeps"] > 0, w
assert devs["d3"]["ports"][0]["queues"][0]["requests"] > 0, devs["d3"]
EOF
c stats d0 --watch 0.1 --count 2 >"$dir/watch" || fail "stats --watch"
[[ $(grep -c '^d0 ' "$dir/watch") == 2 ]] || fail "stats --watch: $(cat "$dir/watch")"

# --- live resize (no driver connected: the next one reads the new size)
c blk-resize d0 128M >"$dir/out" || fail "blk-resize"
grep -q "134217728 bytes" "$dir/out" || fail "blk-resize said: $(cat "$dir/out")"
[[ $(stat -c %s "$dir/disk.img") == 134217728 ]] || fail "the file did not grow"
rc=0; c blk-resize d0 64M 2>"$dir/err" || rc=$?
((rc == 1)) || fail "a shrink was accepted"
rc=0; c blk-resize r0 1G 2>"$dir/err" || rc=$?
((rc == 1)) && grep -q "not blk" "$dir/err" || fail "resize of rng: $(cat "$dir/err")"
"$VHUCTL" blk verify --socket-path "$dir/d0.sock" --force >"$dir/out" 2>&1 || fail "verify after resize"

# --- log level, removal
[[ $(c log-level debug) == "log level debug" ]] || fail "log-level debug"
[[ $(c log-level) == "log level debug" ]] || fail "log-level query"
c log-level info >/dev/null
rc=0; c log-level loud 2>/dev/null || rc=$?
((rc == 1)) || fail "a bad log level was taken"
c device-remove r0 >/dev/null || fail "device-remove r0"
c device-remove s0 >/dev/null || fail "device-remove s0"
[[ ! -e $dir/r0.sock && ! -e $dir/p0.sock ]] || fail "removed devices left their sockets"
rc=0; c device-remove r0 2>/dev/null || rc=$?
((rc == 1)) || fail "removing a removed device"
c list >"$dir/list"
grep -q '^r0 ' "$dir/list" && fail "r0 still listed"
"$VHUCTL" blk verify --socket-path "$dir/d0.sock" --force >/dev/null 2>&1 || fail "d0 after removals"

# --- raw JSON-RPC and hostile input
cat >"$dir/raw.py" <<'EOF'
import json, os, socket, sys, time
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(10)
    return s, s.makefile("rb")

s, f = conn()
def send(line):
    s.sendall(line if isinstance(line, bytes) else line.encode())
def reply():
    line = f.readline()
    assert line.endswith(b"\n"), line
    return json.loads(line)
def call(line):
    send(line + (b"\n" if isinstance(line, bytes) else "\n"))
    return reply()
def err(line, code):
    r = call(line)
    assert "error" in r and r["error"]["code"] == code, (line[:80], r)
    return r

ok = call('{"jsonrpc":"2.0","id":"a","method":"device-list"}')
assert ok["id"] == "a" and ok["result"]["devices"], ok
r = call('{"jsonrpc":"2.0","id":7,"method":"device-add","params":{"id":"raw","type":"blk",'
         '"socket-path":"%s/raw.sock","null":1048576,"read-only":true,"num-queues":2}}' % os.path.dirname(path))
assert r.get("result") == {"id": "raw", "type": "blk"}, r
err('{"jsonrpc":"2.0","id":1,"method":"device-add","params":{"id":"x","type":"blk","null":"1M","read-only":"yes"}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"device-add","params":{"id":"x","type":"blk","null":-5}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"device-add","params":{"id":"x","type":7}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"no-such-method"}', -32601)
err('{"jsonrpc":"2.0","id":1,"method":"stats","params":[1,2]}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"stats","params":{"id":{"a":1}}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"stats","params":{"what":1}}', -32602)
err('{"jsonrpc":"1.0","id":1,"method":"stats"}', -32600)
err('{"jsonrpc":"2.0","id":[1],"method":"stats"}', -32600)
err('{"jsonrpc":"2.0","id":1,"method":7}', -32600)
err('[{"jsonrpc":"2.0","id":1,"method":"stats"}]', -32600)
err('"just a string"', -32600)
err('[' * 5000 + ']' * 5000, -32700)
err('{"a":' * 40 + '1' + '}' * 40, -32700)
err(b'{"jsonrpc":"2.0","id":1,"method":"st\xff\xfeats"}', -32700)
err('{"jsonrpc":"2.0","id":1,"method":"stats"', -32700)
err('{"jsonrpc":"2.0","id":1,"method":"stats"} trailing', -32700)
err('{"jsonrpc":"2.0","id":1,"method":"blk-resize","params":{"id":"raw","size":' + '9' * 400 + '}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"blk-resize","params":{"id":"raw","size":1e300}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"blk-resize","params":{"id":"raw","size":-1}}', -32602)
err('{"jsonrpc":"2.0","id":1,"method":"blk-resize","params":{"id":"raw","size":"9999999999T"}}', -32602)
# a 1 MB line: one error, the rest of the line is skipped, the next line is served
send(b'{"x":"' + b"a" * (1 << 20) + b'"}\n')
r = reply()
assert r["error"]["code"] == -32600 and "too long" in r["error"]["message"], r
assert "result" in call('{"jsonrpc":"2.0","id":2,"method":"device-list"}')
# a notification gets no reply: the next reply is the next request's
send('{"jsonrpc":"2.0","method":"log-level","params":{"level":"info"}}\n')
assert call('{"jsonrpc":"2.0","id":3,"method":"log-level"}')["id"] == 3
# blank lines are ignored
assert call('\n\n{"jsonrpc":"2.0","id":4,"method":"device-list"}')["id"] == 4
r = call('{"jsonrpc":"2.0","id":5,"method":"device-remove","params":{"id":"raw"}}')
assert r["result"] == {"id": "raw"}, r

mode = sys.argv[2] if len(sys.argv) > 2 else ""
if mode == "flood":
    # 1000 bad requests, pipelined, all answered
    bad = [b'{"jsonrpc":"2.0","id":1,"method":"nope"}\n', b'{"a":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}\n',
           b'\xff\xff\n', b'{"jsonrpc":"2.0","id":1,"method":"blk-resize","params":{"size":"x"}}\n']
    send(b"".join(bad[i % 4] for i in range(1000)))
    for i in range(1000):
        assert "error" in reply()
    # more clients than allowed: the extra ones are closed, the first ones served
    many = [conn() for _ in range(40)]
    served = 0
    for cs, cf in many:
        try:
            cs.sendall(b'{"jsonrpc":"2.0","id":1,"method":"device-list"}\n')
            line = cf.readline()
            served += bool(line)
        except OSError:
            pass
    assert 20 <= served < 40, served
    for cs, cf in many:
        cf.close(); cs.close()
    # a client that never reads: requests pile up, vhud stops reading it; others are served
    ns, nf = conn()
    ns.setblocking(False)
    req = b'{"jsonrpc":"2.0","id":1,"method":"stats"}\n' * 1000
    sent = 0
    t0 = time.time()
    while time.time() - t0 < 2:
        try:
            sent += ns.send(req)
        except BlockingIOError:
            time.sleep(0.01)
    s2, f2 = conn()
    s2.sendall(b'{"jsonrpc":"2.0","id":9,"method":"device-list"}\n')
    assert json.loads(f2.readline())["id"] == 9
    nf.close(); ns.close(); f2.close(); s2.close()
print("raw ok")
EOF
python3 "$dir/raw.py" "$ctl" >"$dir/raw.out" 2>&1 || { cat "$dir/raw.out" >&2; fail "raw JSON-RPC"; }
fd0=$(fds) rss0=$(rss)
python3 "$dir/raw.py" "$ctl" flood >"$dir/raw.out" 2>&1 || { cat "$dir/raw.out" >&2; fail "hostile clients"; }
sleep 0.3
fd1=$(fds) rss1=$(rss)
((fd1 == fd0)) || fail "fds: $fd0 before 1000 bad requests and 40 clients, $fd1 after"
# (under ASan freed memory sits in its quarantine: RSS says nothing there; its leak check at
# exit does)
grep -q libasan "/proc/$pid/maps" || ((rss1 < rss0 + 8192)) ||
  fail "memory: RSS ${rss0} kB before, ${rss1} kB after"
kill -0 "$pid" || fail "vhud died"
"$VHUCTL" blk verify --socket-path "$dir/d0.sock" --force >/dev/null 2>&1 || fail "d0 after the flood"
stop_vhud
[[ ! -e $ctl && ! -e $dir/d0.sock && ! -e $dir/n0.sock ]] || fail "sockets left after exit"

# --- a command-line device and the control socket in one daemon
sock=$dir/blk.sock
start_vhud_on "$ctl" blk --null 16M --socket-path "$sock" --control "$ctl"
c list | grep -q "^blk .* $sock\$" || fail "the command line's device is not listed: $(c list)"
c device-add rng r1 --socket-path "$dir/r1.sock" >/dev/null || fail "device-add beside blk"
"$VHUCTL" rng read --socket-path "$dir/r1.sock" --bytes 64 >/dev/null || fail "rng read on r1"
c blk-resize blk 32M >/dev/null || fail "resize of the command line's blk"
stop_vhud
echo "PASS"
