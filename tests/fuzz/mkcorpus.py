#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Write the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): a handful of small,
well-formed programs per target, in each target's input format (its header comment and
docs/security.md), so the fuzzer starts from a working session, ring or request instead of
rediscovering them. Deterministic; rerun after changing an input format:
    tests/fuzz/mkcorpus.py
Inputs the fuzzer found that reproduced bugs live next to these as regress-*; this script leaves
them alone."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


# ---- fuzz_session: device byte, then messages -------------------------------------------------
def msg(req, payload=b'', need_reply=False, fds=b'\x00'):
    """req < 0x80 (a known id), flags byte (bit 0: NEED_REPLY), fd selector (+ fd bytes)."""
    return struct.pack('<BB', req, 1 if need_reply else 0) + fds[:1] + \
        struct.pack('<H', len(payload)) + payload + fds[1:]


FD_MEMFD = bytes([1 | (2 << 1), 0])   # one memfd of 64 KiB, no bytes written
FD_KICK = bytes([1 | (4 << 1)])       # one eventfd, already signalled
FD_CALL = bytes([1 | (0 << 1)])       # one eventfd
FD_SOCK = bytes([1 | (3 << 1)])       # a socketpair end (backend channel)
UVA = 0x7f0000000000


def session(features, nq, proto=0x1 | 0x8 | 0x20 | 0x200 | 0x1000 | 0x2000 | 0x8000 | 0x10000):
    s = msg(3)                                          # SET_OWNER
    s += msg(1)                                         # GET_FEATURES
    s += msg(15)                                        # GET_PROTOCOL_FEATURES
    s += msg(2, struct.pack('<Q', features | 1 << 30))  # SET_FEATURES
    s += msg(16, struct.pack('<Q', proto))              # SET_PROTOCOL_FEATURES
    s += msg(17)                                        # GET_QUEUE_NUM
    s += msg(5, struct.pack('<II', 1, 0) + struct.pack('<QQQQ', 0, 0x10000, UVA, 0),
             need_reply=True, fds=FD_MEMFD)             # SET_MEM_TABLE
    for q in range(nq):
        base = q * 0x3000
        s += msg(8, struct.pack('<II', q, 8))           # SET_VRING_NUM
        s += msg(9, struct.pack('<IIQQQQ', q, 0, UVA + base, UVA + base + 0x2000,
                                UVA + base + 0x1000, 0))  # SET_VRING_ADDR (desc, used, avail)
        s += msg(10, struct.pack('<II', q, 0))          # SET_VRING_BASE
        s += msg(13, struct.pack('<Q', q), fds=FD_CALL)  # SET_VRING_CALL
        s += msg(12, struct.pack('<Q', q), fds=FD_KICK)  # SET_VRING_KICK
        s += msg(18, struct.pack('<II', q, 1))          # SET_VRING_ENABLE
    s += msg(24, struct.pack('<III', 0, 16, 0) + bytes(16))  # GET_CONFIG
    s += msg(40)                                        # GET_STATUS
    s += msg(11, struct.pack('<II', 0, 0))              # GET_VRING_BASE
    return s


V1 = 1 << 32
write('fuzz_session', 'rng', b'\x00' + session(V1, 1, proto=0x1 | 0x8 | 0x20 | 0x1000 | 0x2000 | 0x8000 | 0x10000))
write('fuzz_session', 'blk', b'\x01' + session(V1 | 1 << 12, 2))
write('fuzz_session', 'net', b'\x02' + session(V1 | 1 << 5 | 1 << 22, 2))
write('fuzz_session', 'inflight-backend-channel',
      b'\x01' + session(V1, 1) +
      msg(21, fds=FD_SOCK) +                                         # SET_BACKEND_REQ_FD
      msg(31, struct.pack('<QQHHxxxx', 0, 0, 2, 8)) +                    # GET_INFLIGHT_FD
      msg(37, struct.pack('<Q', 0) + struct.pack('<QQQQ', 0x100000, 0x10000, UVA + 0x100000, 0),
          fds=FD_MEMFD) +                                            # ADD_MEM_REG
      msg(38, struct.pack('<Q', 0) + struct.pack('<QQQQ', 0x100000, 0x10000, UVA + 0x100000, 0)) +
      msg(34))                                                       # RESET_DEVICE


# ---- fuzz_vq: flags, num selector, base, ring offsets, then steps --------------------------------
def gw(reg, off, data):
    """step 0: guest write of data at off in region reg (at most 256 bytes)."""
    return struct.pack('<BBHB', 0, reg, off, len(data) - 1) + data


def sdesc(addr, length, flags, nxt):
    return struct.pack('<QIHH', addr, length, flags, nxt)


def pdesc(addr, length, bid, flags):
    return struct.pack('<QIHH', addr, length, bid, flags)


NEXT, WRITE, INDIRECT = 1, 2, 4
POP, PUSH, FLUSH = b'\x01', b'\x03', b'\x04'


def vq_split(flags):
    h = struct.pack('<BBIHHH', flags, 2, 0, 0x0, 0x1000, 0x2000)   # num 4, rings in region 0
    s = gw(0, 0, sdesc(0x3000, 64, NEXT, 1) + sdesc(0xfff0, 32, WRITE, 2) +  # straddles 0/1
           sdesc(0x4000, 32, INDIRECT, 0))
    s += gw(0, 0x4000, sdesc(0x3100, 16, NEXT, 1) + sdesc(0x100000, 128, WRITE, 0))
    s += gw(0, 0x1000, struct.pack('<HHHH', 0, 2, 0, 2))           # avail: idx 2, heads 0, 2
    s += POP + POP + PUSH + b'\x00' + struct.pack('<I', 32) + PUSH + b'\x00' + \
        struct.pack('<I', 128) + FLUSH + b'\x07'
    return h + s


def vq_packed(flags):
    h = struct.pack('<BBIHHH', flags | 1, 3, 0x80008000, 0x0, 0x1000, 0x2000)  # num 4, wraps 1
    avail = 1 << 7
    s = gw(0, 0, pdesc(0x3000, 64, 5, avail | NEXT) + pdesc(0x10000, 32, 5, avail | WRITE) +
           pdesc(0x4000, 32, 6, avail | INDIRECT))
    s += gw(0, 0x4000, sdesc(0x3100, 16, NEXT, 1) + sdesc(0x100000, 128, WRITE, 0))
    s += POP + POP + PUSH + b'\x00' + struct.pack('<I', 32) + FLUSH + PUSH + b'\x00' + \
        struct.pack('<I', 128) + FLUSH + b'\x07'
    return h + s


write('fuzz_vq', 'split-indirect', vq_split(4))
write('fuzz_vq', 'split-indirect-event-idx', vq_split(6))
write('fuzz_vq', 'split-inflight', struct.pack('<B', 4 | 8) + vq_split(4)[1:])
write('fuzz_vq', 'packed-indirect', vq_packed(4))
write('fuzz_vq', 'packed-indirect-event-idx', vq_packed(6))


# ---- fuzz_dev: device, option, ring flags, queue size, features, then steps ----------------------
def dw(off, data):
    return struct.pack('<BHB', 0, off, len(data) - 1) + data


def seg(off, length):
    return struct.pack('<BHH', 0, off, length)


def submit(q, segs_out, segs_in):
    return bytes([1, q | len(segs_out) << 4 | len(segs_in) << 6]) + b''.join(segs_out + segs_in)


KICK = b'\x04'


def dev(kind, opt, flags, qs, features, steps):
    return struct.pack('<BBBBQ', kind, opt, flags, qs, features) + steps


ALL = (1 << 64) - 1
blk = dw(0, struct.pack('<IIQ', 0, 0, 0)) + submit(0, [seg(0, 16)], [seg(0x1000, 512), seg(0x400, 1)])
blk += dw(0x20, struct.pack('<IIQ', 1, 0, 1)) + submit(0, [seg(0x20, 16), seg(0x2000, 1024)],
                                                       [seg(0x401, 1)])
blk += dw(0x40, struct.pack('<IIQ', 8, 0, 0)) + submit(0, [seg(0x40, 16)], [seg(0x600, 20), seg(0x402, 1)])
blk += dw(0x60, struct.pack('<IIQ', 4, 0, 0)) + submit(0, [seg(0x60, 16)], [seg(0x403, 1)])
blk += KICK
write('fuzz_dev', 'blk-split', dev(0, 0, 2 | 4, 3, ALL, blk))
write('fuzz_dev', 'blk-packed', dev(0, 2, 1 | 2 | 4, 7, ALL, blk))
frame = bytes(12) + bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]) + bytes(range(46))
net = submit(0, [], [seg(0x1000, 2048)]) + submit(0, [], [seg(0x2000, 1024), seg(0x3000, 1024)])
net += dw(0, frame) + submit(1, [seg(0, len(frame))], []) + KICK + b'\x09'
write('fuzz_dev', 'net-reflect-split', dev(2, 0, 2 | 4, 4, ALL, net))
write('fuzz_dev', 'net-reflect-packed', dev(2, 0, 1 | 2 | 4, 15, ALL, net))
write('fuzz_dev', 'net-source', dev(2, 2, 2, 4, ALL, net))
write('fuzz_dev', 'rng', dev(4, 0, 2, 3, ALL, submit(0, [], [seg(0, 64)]) + KICK))


# ---- fuzz_vqd: flags, num selector, then steps ------------------------------------------------------
def add(n_out, n_in, lens):
    return bytes([n_out << 3 | n_in << 5]) + b''.join(struct.pack('<H', x) for x in lens)


vqd = add(1, 1, [16, 64]) + add(0, 2, [32, 32]) + b'\x02'
write('fuzz_vqd', 'split', bytes([2, 3]) + vqd + b'\x03' + struct.pack('<HI', 0, 64) + b'\x05' +
      b'\x03' + struct.pack('<HI', 1, 64) + b'\x05\x07')
write('fuzz_vqd', 'split-indirect', bytes([4, 3]) + vqd + b'\x03' + struct.pack('<HI', 0, 8) +
      b'\x05')
write('fuzz_vqd', 'packed', bytes([1 | 2, 7]) + vqd + b'\x43' + struct.pack('<HIH', 0, 64, 0) +
      b'\x05' + b'\x43' + struct.pack('<HIH', 1, 64, 2) + b'\x05\x07')
