#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""
One-off: prefix vhu's virtio spec names (the macros and struct tags of include/vhu/virtio.h,
dev/blk.h and dev/net.h) with VHU_ / vhu_ in C code, leaving comments and string literals alone.
For branches started before the rename: scripts/prefix-spec-names.py $(git ls-files '*.c' '*.h')
Running it twice is harmless; files that include <linux/virtio_*.h> are left alone.
Delete once every branch has it.
"""
import re, sys

MACRO = re.compile(r'(VIRTIO_(F|RING_F|CONFIG_S|ID|BLK|NET)_[A-Z0-9_]+|VRING_(DESC_F|USED_F|AVAIL_F|PACKED)_[A-Z0-9_]+)')
TAGS = {'vring_desc', 'vring_avail', 'vring_used_elem', 'vring_used', 'vring_packed_desc',
        'vring_packed_desc_event', 'virtio_blk_geometry', 'virtio_blk_topology',
        'virtio_blk_zoned_characteristics', 'virtio_blk_config', 'virtio_blk_outhdr',
        'virtio_blk_discard_write_zeroes', 'virtio_net_config', 'virtio_net_hdr_v1'}
IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')

def rename_code(code, prev):
    out = []
    pos = 0
    for m in IDENT.finditer(code):
        w = m.group(0)
        out.append(code[pos:m.start()])
        if MACRO.fullmatch(w):
            w = 'VHU_' + w
        elif w in TAGS and prev[0] == 'struct':
            w = 'vhu_' + w
        prev[0] = m.group(0)
        out.append(w)
        pos = m.end()
    out.append(code[pos:])
    return ''.join(out)

def process(text):
    out = []
    i = 0
    n = len(text)
    prev = [None]
    code_start = 0
    while i < n:
        c = text[i]
        if text.startswith('//', i) or text.startswith('/*', i) or c in '"\'':
            out.append(rename_code(text[code_start:i], prev))
            if text.startswith('//', i):
                j = text.find('\n', i)
                j = n if j < 0 else j
            elif text.startswith('/*', i):
                j = text.find('*/', i + 2) + 2
            else:
                j = i + 1
                while text[j] != c:
                    j += 2 if text[j] == '\\' else 1
                j += 1
            out.append(text[i:j])
            i = code_start = j
            continue
        i += 1
    out.append(rename_code(text[code_start:], prev))
    return ''.join(out)

for path in sys.argv[1:]:
    with open(path) as f:
        t = f.read()
    if '<linux/virtio_' in t:
        continue  # uses the kernel's names on purpose (tests/unit/test_headers.c)
    nt = process(t)
    if nt != t:
        with open(path, 'w') as f:
            f.write(nt)
