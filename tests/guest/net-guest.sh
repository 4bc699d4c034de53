# shellcheck shell=sh
# SPDX-License-Identifier: BSD-3-Clause
# Guest side of the net tests (busybox sh; packed into the initramfs as /extra/net-guest.sh and
# sourced by the test script): a TCP listener whose bytes are checked against /extra/data.bin.
# Uses the test script's `result`.

# tcp_listen PORT: start the listener in the background (sets size, want, lpid) and return once
# the port is listening (10 s at most), so that a host told to connect now finds it. Callable
# again for the next stream (one at a time).
tcp_listen() {
  size=$(wc -c </extra/data.bin)
  want=$(md5sum </extra/data.bin | cut -d' ' -f1)
  # the listener's stdin must never reach EOF: busybox nc half-closes on stdin EOF and the
  # sender, seeing that, would quit before its data is out
  [ -p /tmp/hold ] || mkfifo /tmp/hold
  nc -l -p "$1" <>/tmp/hold >/tmp/r &
  lpid=$!
  tcp_wait_listen "$1"
}

# tcp_wait_listen PORT: return once something listens on PORT (10 s at most)
tcp_wait_listen() {
  # /proc/net/tcp, or tcp6 (busybox nc may listen on ::): local address ANY:PORT (hex),
  # remote 0:0, state 0A (LISTEN)
  lport=$(printf '%04X' "$1")
  li=0
  while ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ": 0*:$lport 0*:0000 0A " &&
        [ $li -lt 100 ]; do
    sleep 0.1; li=$((li + 1))
  done
}

# tcp_recv_check PREFIX: wait for the listener (180 s at most), report tcp-recv PASS when the
# bytes and their md5 match data.bin; PREFIX starts the message.
tcp_recv_check() {
  ( sleep 180; kill $lpid 2>/dev/null ) &
  wpid=$!
  wait $lpid
  kill $wpid 2>/dev/null
  got=$(wc -c </tmp/r)
  sum=$(md5sum </tmp/r | cut -d' ' -f1)
  if [ "$got" = "$size" ] && [ "$sum" = "$want" ]; then
    result PASS tcp-recv "$1$got bytes md5 $sum"
  else
    result FAIL tcp-recv "${1}got $got bytes md5 $sum, want $size bytes md5 $want"
  fi
}
