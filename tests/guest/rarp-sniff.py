#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# rarp-sniff.py OUT SECS IFACE...: print one line per RARP frame (ethertype 0x8035) that arrives
# on one of the IFACEs from its own device during SECS seconds ("rarp SRC-MAC IFACE"), flushed to
# OUT as it comes; frames the kernel sends out through an IFACE (a bridge flooding another port's
# broadcast) are not counted. "listening" is the first line, once the socket is open. For
# migrate-net.sh, which must see on the destination's tap the frame its vhud sends on SEND_RARP
# (this machine has no tcpdump).
import socket
import sys
import time

PACKET_OUTGOING = 4  # linux/if_packet.h

out, secs, ifaces = sys.argv[1], float(sys.argv[2]), set(sys.argv[3:])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
s.settimeout(0.2)
end = time.time() + secs
with open(out, "a", buffering=1) as f:
    f.write("listening\n")
    while time.time() < end:
        try:
            frame, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        if addr[0] not in ifaces or addr[2] == PACKET_OUTGOING:
            continue
        if len(frame) >= 14 and frame[12:14] == b"\x80\x35":
            f.write("rarp %s %s\n" % (":".join("%02x" % b for b in frame[6:12]), addr[0]))
