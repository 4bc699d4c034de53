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


# ---- fuzz_vvu_dev: device options, then steps (op byte + operands) -------------------------------
def vd_up(fl=4, extra=b''):
    return bytes([4, fl]) + extra


def vd_rx(k=7):
    return bytes([5, k])


def vd_tx(payload, slot=0):
    return bytes([7, slot]) + struct.pack('<H', len(payload)) + payload


def vd_fe(req, payload=b'', need_reply=False):
    return bytes([10, 1 if need_reply else 0, req]) + struct.pack('<H', len(payload)) + payload


def vd_hdr(req, size):
    return struct.pack('<III', req, 0x5, size)


VD_LOOP = b'\x0e'
VD_OPT = bytes([7 | 3 << 3])        # 8 vhost queues, 32 KiB window
relay = vd_up() + vd_rx() + vd_fe(1) + VD_LOOP + vd_tx(vd_hdr(1, 8) + struct.pack('<Q', 1 << 32))
relay += VD_LOOP + b'\x0c' + vd_fe(15) + VD_LOOP + vd_tx(vd_hdr(15, 8) + struct.pack('<Q', ALL))
relay += VD_LOOP + b'\x0c' + vd_fe(16, struct.pack('<Q', 0x1 | 0x8), True) + VD_LOOP
relay += vd_tx(vd_hdr(16, 8) + struct.pack('<Q', 0)) + vd_fe(8, struct.pack('<II', 0, 16)) + VD_LOOP
relay += vd_tx(struct.pack('<III', 99, 1, 0), 0x81) + b'\x09\x01' + b'\x1c' + VD_LOOP
write('fuzz_vvu_dev', 'relay', VD_OPT + relay)
# register walks: config space (the capability list), every BAR0 register block, MSI-X
regs = b''.join(bytes([0, 2, off]) for off in range(0, 0x100, 4))
regs += b''.join(bytes([1, 2 << 3 | sel << 5, o]) for sel in range(4) for o in (0, 4, 8, 0x10, 0x14))
regs += b''.join(bytes([1, 1 | 2 << 3]) + struct.pack('<H', o) for o in (0, 0x10, 0x8000))
regs += bytes([0x10, 1, 0x04]) + struct.pack('<I', 6)               # command: memory, master
regs += bytes([0x11, 2 << 3 | 2 << 5, 0]) + struct.pack('<I', 1) + bytes(12)  # BACKEND_UP by hand
regs += bytes([0x11, 1 | 3 << 3]) + struct.pack('<H', 0x10) + struct.pack('<Q', 0xfee00000) + bytes(8)
write('fuzz_vvu_dev', 'registers', VD_OPT + regs)
# rings placed by the input, bad rx buffers, DMA withdrawn and back, a function reset
hostile = vd_up(0x40 | 3, struct.pack('<IIIIII', 0x1000, 0x3000, 0x3400, 0x16ff0, 0, 0))
hostile += vd_rx(0x80 | 1) + struct.pack('<IHB', 0x5000, 8, 2) + struct.pack('<IHB', 0x14ff0, 4108, 2)
hostile += vd_up() + vd_rx() + vd_fe(1) + VD_LOOP + b'\x13' + VD_LOOP + b'\x23' + vd_fe(1) + VD_LOOP
hostile += b'\x33' + vd_up() + vd_rx(0) + vd_fe(3) + VD_LOOP
write('fuzz_vvu_dev', 'hostile-rings', VD_OPT + hostile)


# ---- fuzz_vfu_server: device options, flags (bit 0: VERSION first), then steps --------------------
def vf_cmd(cmd, payload=b'', fdsel=0, no_reply=False):
    return bytes([0x08 if no_reply else 0, cmd, fdsel]) + struct.pack('<H', len(payload)) + payload


def vf_rw(off, value, width, base=0, region=0):
    """REGION_WRITE of width bytes at bases[base] + off (off < 256) of region 0-2 or 3 (config)."""
    w = {1: 0, 2: 1, 4: 2, 8: 3}[width]
    return bytes([2 | 0x10 | w << 5, region | base << 2, off]) + value.to_bytes(width, 'little')


def vf_rd(off, width, base=0, region=0):
    w = {1: 0, 2: 1, 4: 2, 8: 3}[width]
    return bytes([2 | w << 5, region | base << 2, off])


def vf_mem(off, data):
    """the client writes its 1 MiB memfd (DMA memory at 0x100000 once mapped)"""
    return bytes([4 | 0x08]) + struct.pack('<IB', off, len(data) - 1) + data


def split_desc(addr, length, flags):
    return struct.pack('<QIHH', addr, length, flags, 0)


VF_DMA = 0x100000
vf = vf_cmd(4, struct.pack('<IIII', 16, 0, 0, 0))                                 # DEVICE_GET_INFO
vf += b''.join(vf_cmd(5, struct.pack('<IIIIQQ', 256, 0, i, 0, 0, 0)) for i in range(9))  # REGION_INFO
vf += vf_cmd(7, struct.pack('<IIII', 16, 0, 2, 0))                                # IRQ_INFO MSI-X
vf += vf_cmd(8, struct.pack('<IIIII', 20, 4 | 32, 2, 0, 4), fdsel=0x3c)          # SET_IRQS 4 eventfds
vf += vf_cmd(2, struct.pack('<IIQQQ', 32, 3, 0, VF_DMA, 0x100000), fdsel=0x2)     # DMA_MAP 1 MiB
S = 0x14
vf += vf_rw(S, 0, 1) + vf_rw(S, 3, 1) + vf_rw(0x08, 1, 4) + vf_rw(0x0c, 1, 4) + vf_rw(S, 0xb, 1)
vf += vf_rw(0x10, 0, 2)
for q in range(2):
    base = VF_DMA + q * 0x2000
    vf += vf_rw(0x16, q, 2) + vf_rw(0x18, 16, 2) + vf_rw(0x20, base, 8) + vf_rw(0x28, base + 0x1000, 8)
    vf += vf_rw(0x30, base + 0x1400, 8) + vf_rw(0x1a, 1 + q, 2) + vf_rw(0x1c, 1, 2)
vf += vf_rw(S, 0xf, 1) + vf_rw(0, 1, 4, base=2)                                   # DRIVER_OK, BACKEND_UP
vf += vf_mem(0, b''.join(split_desc(VF_DMA + 0x4000 + i * 0x1100, 4108, 2) for i in range(8)))
vf += vf_mem(0x1000, struct.pack('<HH', 0, 8) + b''.join(struct.pack('<H', i) for i in range(8)))
vf += vf_rw(0, 0, 2, base=3)                                                      # notify rxq
vf += vf_cmd(6, struct.pack('<IIII', 16 + 16 * 32, 0, 0, 0))                      # REGION_IO_FDS BAR0
vf += vf_rd(0, 4, base=2) + vf_rd(0, 1, base=1) + vf_rd(0, 4, base=4) + vf_rd(0x34, 1, region=3)
vf += vf_mem(0x2000, split_desc(VF_DMA + 0xc800, 20, 0)) + vf_mem(0xc800, struct.pack('<IIIQ', 1, 5, 8, 1))
vf += vf_mem(0x3000, struct.pack('<HHH', 0, 1, 0)) + vf_rw(4, 1, 2, base=3)        # a txq reply, notify
vf += vf_cmd(8, struct.pack('<IIIII', 20, 2 | 8, 2, 1, 2) + b'\x01\x01')         # SET_IRQS mask bools
vf += vf_cmd(3, struct.pack('<IIQQ', 24, 0, VF_DMA, 0x100000))                   # DMA_UNMAP
vf += vf_cmd(13) + b'\x0d'                                                        # DEVICE_RESET, reconnect
write('fuzz_vfu_server', 'bringup', bytes([7 | 3 << 3, 1]) + vf)
raw = bytes([3, 0, 16, 0]) + struct.pack('<HHIII', 1, 9, 64, 0, 0) + bytes(16)   # size lies (64)
raw += bytes([3, 0, 0, 0]) + struct.pack('<HHIII', 2, 1, 8, 1, 0)                # size < header; a reply
raw += bytes([0, 99, 0, 0, 0]) + bytes([0x10, 2, 0]) + struct.pack('<HI', 0, 0x30)  # unknown; flags
write('fuzz_vfu_server', 'raw', bytes([0, 0]) + vf_cmd(1, struct.pack('<HH', 0, 1) + b'{}\0') + raw)


# ---- fuzz_mpqemu: device options, then steps --------------------------------------------------------
def mq_cfgw(addr, val, width):
    return bytes([1 | 0x10, {1: 0, 2: 1, 4: 2}[width], addr]) + struct.pack('<I', val)


def mq_barw(bar, off, val, width):
    return bytes([3 | 0x10, bar | {1: 0, 2: 1, 4: 2, 8: 3}[width] << 3]) + struct.pack('<HQ', off, val)


def mq_barr(bar, off, width):
    return bytes([2, bar | {1: 0, 2: 1, 4: 2, 8: 3}[width] << 3]) + struct.pack('<H', off)


def mq_mem(off, data):
    return bytes([5 | 0x08]) + struct.pack('<IB', off, len(data) - 1) + data


BASE = [0xe0000000 + i * 0x01000000 for i in range(6)]
mq = b''.join(bytes([1, 2, a]) for a in range(0, 0x40, 4))                      # config reads
mq += mq_cfgw(0x10, 0xffffffff, 4) + bytes([1, 2, 0x10])                        # BAR0 sizing
mq += mq_cfgw(0x10, BASE[0], 4) + mq_cfgw(0x14, BASE[1], 4) + mq_cfgw(0x18, BASE[2], 4)
mq += mq_cfgw(0x04, 6, 2)
sysmem = struct.pack('<8Q', VF_DMA, *[0] * 7) + struct.pack('<8Q', 0x100000, *[0] * 7) + bytes(64)
mq += bytes([0, 0, 0x2]) + sysmem                                                # SYNC_SYSMEM
mq += bytes([0, 6, 0x0c])                                                         # SET_IRQFD
mq += mq_barw(0, S, 0, 1) + mq_barw(0, S, 3, 1) + mq_barw(0, 0x08, 1, 4) + mq_barw(0, 0x0c, 1, 4)
mq += mq_barw(0, S, 0xb, 1) + mq_barw(0, 0x10, 0, 2)
for q in range(2):
    base = VF_DMA + q * 0x2000
    mq += mq_barw(0, 0x16, q, 2) + mq_barw(0, 0x18, 16, 2) + mq_barw(0, 0x20, base, 8)
    mq += mq_barw(0, 0x28, base + 0x1000, 8) + mq_barw(0, 0x30, base + 0x1400, 8)
    mq += mq_barw(0, 0x1a, 1 + q, 2) + mq_barw(0, 0x1c, 1, 2)
mq += mq_barw(0, S, 0xf, 1) + mq_barw(0, 0x1000, 1, 4)
mq += mq_mem(0, b''.join(split_desc(VF_DMA + 0x4000 + i * 0x1100, 4108, 2) for i in range(8)))
mq += mq_mem(0x1000, struct.pack('<HH', 0, 8) + b''.join(struct.pack('<H', i) for i in range(8)))
mq += mq_barw(0, 0x1800, 0, 2) + mq_barr(0, 0x800, 1) + mq_barr(1, 0, 4) + mq_barr(2, 0, 8)
mq += mq_barw(1, 0x10, 0xfee00000, 8) + mq_barr(0, 0x1000, 4)
mq += bytes([0, 7, 0]) + b'\x06' + bytes([1, 2, 0x10])                          # DEVICE_RESET, reconnect
write('fuzz_mpqemu', 'bringup', bytes([7 | 3 << 3]) + mq)
raw = bytes([4, 0, 12]) + struct.pack('<iIQ', 3, 0, 12) + struct.pack('<IIi', 0, 0, 4)  # CFGREAD, raw
raw += bytes([4, 0, 0]) + struct.pack('<iIQ', 1, 0, 8)                           # RET: refused
raw += bytes([4, 0x30, 0]) + struct.pack('<iIQ', 0, 0, 192)                      # fds, short payload
write('fuzz_mpqemu', 'raw', bytes([0]) + raw)


# ---- fuzz_vvu_driver: device options, then one byte per bus operation (0: honest) interleaved
# with steps (0: let the loop run); the driver's bring-up reads 132 of them -------------------
def dv_fe(req, payload=b'', need_reply=False):
    return bytes([1, 1 if need_reply else 0, req]) + struct.pack('<H', len(payload)) + payload + bytes(8)


dv = dv_fe(3) + dv_fe(1) + dv_fe(15) + dv_fe(2, struct.pack('<Q', V1)) + \
    dv_fe(16, struct.pack('<Q', 0x1 | 0x8), True) + dv_fe(17) + \
    dv_fe(8, struct.pack('<II', 0, 8)) + \
    dv_fe(40) + dv_fe(11, struct.pack('<II', 0, 0)) + b'\x04' + bytes(8)
write('fuzz_vvu_driver', 'session', bytes([7]) + bytes(140) + dv)
# the device lies about its capability list and a register during bring-up, then serves
write('fuzz_vvu_driver', 'lies', bytes([7]) + bytes(20) + b'\xe1\x09\x00\x10\x09' + bytes(30) +
      b'\xe2' + bytes(40) + b'\xe4' + bytes(140) + dv_fe(1) + dv_fe(15))
# the device scribbles over the rxq used ring (first DMA allocation) mid-session
write('fuzz_vvu_driver', 'used-ring', bytes([7]) + bytes(140) + dv_fe(1) +
      bytes([3, 0]) + struct.pack('<IB', 0x1400, 7) + struct.pack('<HHII', 0, 9, 77, 99999) + bytes(8) +
      dv_fe(15) + bytes(16))
# the frontend's message rewritten in rx buffer 0 after the device put it there (size lies)
write('fuzz_vvu_driver', 'rx-rewrite', bytes([7]) + bytes(140) + dv_fe(1)[:-8] + b'\x05\x05\x05' +
      bytes([3, 2]) + struct.pack('<IB', 0, 11) + struct.pack('<III', 15, 1, 4000) + bytes(8) +
      dv_fe(15) + bytes(16))
