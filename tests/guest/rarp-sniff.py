#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# rarp-sniff.py IFACE OUT SECS: print one line per RARP frame (ethertype 0x8035) seen on IFACE
# during SECS seconds ("rarp SRC-MAC"), flushed to OUT as it comes. For migrate-net.sh, which must
# see the frame vhud sends on SEND_RARP (this machine has no tcpdump).
import socket
import sys
import time

iface, out, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
s.bind((iface, 0))
s.settimeout(0.2)
end = time.time() + secs
with open(out, "a", buffering=1) as f:
    f.write("listening\n")
    while time.time() < end:
        try:
            frame = s.recv(2048)
        except socket.timeout:
            continue
        if len(frame) >= 14 and frame[12:14] == b"\x80\x35":
            f.write("rarp " + ":".join("%02x" % b for b in frame[6:12]) + "\n")
