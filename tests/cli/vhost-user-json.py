#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""vhud's vhost-user discovery against QEMU's docs/interop/vhost-user.json and vhost-user.rst
"Backend program conventions":

  - each descriptor (a VhostUserBackend) is a JSON object with exactly the schema's members:
    description, type, binary (str, required), tags (optional list of str); type one of
    VHostUserBackendType; binary an absolute path; the file named NN-NAME.json;
  - BINARY --print-capabilities (run through a vhud-TYPE link, as management software runs the
    descriptor's binary, and as `vhud TYPE`, with unrelated options it must ignore) prints one
    VHostUserBackendCapabilities: type (required, the descriptor's) and only the members of the
    type's branch: block's features (VHostUserBackendBlockFeature), input's, gpu's; none for the
    others (net, rng);
  - the features it claims work: --blk-file PATH and --read-only start a read-only blk device.

  vhost-user-json.py VHUD VHUCTL ROOT DESCRIPTOR...
ROOT is prepended to a descriptor's binary ('' for the build tree: then vhud-TYPE links to VHUD
are made in a temporary directory).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# vhost-user.json (QEMU 4.0 .. 9.x): the enums and which union branch has which features.
BACKEND_TYPES = {'9p', 'balloon', 'block', 'caif', 'console', 'crypto', 'gpu', 'input', 'net',
                 'rng', 'rpmsg', 'rproc-serial', 'scsi', 'vsock', 'fs'}
BRANCH_FEATURES = {
    'block': {'read-only', 'blk-file'},     # VHostUserBackendBlockFeature
    'input': {'evdev-path', 'no-grab'},     # VHostUserBackendInputFeature
    'gpu': {'render-node', 'virgl'},        # VHostUserBackendGPUFeature
}
DESCRIPTOR_MEMBERS = {'description': True, 'type': True, 'binary': True, 'tags': False}
# vhud's device types for each vhost-user.json type
VHUD_TYPE = {'block': 'blk', 'net': 'net', 'rng': 'rng'}

failures = []


def fail(msg):
    failures.append(msg)
    print('FAIL: ' + msg, file=sys.stderr)


def is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_descriptor(path):
    """The VhostUserBackend rules; returns the parsed object or None."""
    name = os.path.basename(path)
    if not re.fullmatch(r'[0-9]{2}-[A-Za-z0-9._-]+\.json', name):
        fail(f'{name}: not named NN-NAME.json (vhost-user.json: a double-digit prefix)')
    try:
        with open(path, encoding='utf-8') as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        fail(f'{name}: not JSON: {e}')
        return None
    if not isinstance(d, dict):
        fail(f'{name}: the root is not an object')
        return None
    for m, required in DESCRIPTOR_MEMBERS.items():
        if required and m not in d:
            fail(f'{name}: required member "{m}" missing')
    for m in d:
        if m not in DESCRIPTOR_MEMBERS:
            fail(f'{name}: member "{m}" is not in VhostUserBackend')
    for m in ('description', 'type', 'binary'):
        if m in d and not isinstance(d[m], str):
            fail(f'{name}: "{m}" is not a string')
    if 'tags' in d and not is_str_list(d['tags']):
        fail(f'{name}: "tags" is not a list of strings')
    if d.get('type') not in BACKEND_TYPES:
        fail(f'{name}: type {d.get("type")!r} is not a VHostUserBackendType')
    if not str(d.get('binary', '')).startswith('/'):
        fail(f'{name}: binary {d.get("binary")!r} is not an absolute path')
    return d


def check_capabilities(what, out, want_type):
    """One VHostUserBackendCapabilities of type want_type; returns its features."""
    try:
        c = json.loads(out)
    except ValueError as e:
        fail(f'{what}: --print-capabilities is not JSON ({e}): {out!r}')
        return set()
    if not isinstance(c, dict):
        fail(f'{what}: capabilities are not an object')
        return set()
    if c.get('type') != want_type:
        fail(f'{what}: capabilities type {c.get("type")!r}, descriptor says {want_type!r}')
    allowed = {'type'} | ({'features'} if want_type in BRANCH_FEATURES else set())
    for m in c:
        if m not in allowed:
            fail(f'{what}: member "{m}" is not in the {want_type!r} branch of '
                 'VHostUserBackendCapabilities')
    feats = c.get('features', [])
    if want_type in BRANCH_FEATURES:
        if 'features' not in c:
            fail(f'{what}: required member "features" missing')
        if not is_str_list(feats):
            fail(f'{what}: "features" is not a list of strings')
            return set()
        for f in feats:
            if f not in BRANCH_FEATURES[want_type]:
                fail(f'{what}: feature {f!r} is not a {want_type} feature of vhost-user.json')
        if len(set(feats)) != len(feats):
            fail(f'{what}: a feature is listed twice')
    return set(feats)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, **kw)


def check_blk_features(binary, vhuctl, tmp, feats):
    """--blk-file and --read-only: a read-only device on a file, seen by vhuctl info."""
    if feats != {'read-only', 'blk-file'}:
        fail(f'{binary}: block features {sorted(feats)}, expected read-only and blk-file')
        return
    img = os.path.join(tmp, 'disk.img')
    sock = os.path.join(tmp, 'blk.sock')
    with open(img, 'wb') as f:
        f.truncate(1 << 20)
    p = subprocess.Popen([binary, '--blk-file', img, '--read-only', '--socket-path', sock],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.025)
        if not os.path.exists(sock):
            fail(f'{binary} --blk-file --read-only did not listen')
            return
        info = run([vhuctl, 'info', '--socket-path', sock])
        # VIRTIO_BLK_F_RO is bit 5
        m = re.search(r'backend features\s+0x([0-9a-f]+)', info.stdout)
        if info.returncode != 0 or not m or not int(m.group(1), 16) & (1 << 5):
            fail(f'--read-only: the device does not offer VIRTIO_BLK_F_RO: {info.stdout}'
                 f'{info.stderr}')
        else:
            print(f'  {os.path.basename(binary)} --blk-file --read-only: VIRTIO_BLK_F_RO offered')
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=10)
        if p.returncode != 0:
            fail(f'{binary} exited {p.returncode} after SIGTERM: {out}')


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    vhud, vhuctl, root, descriptors = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    with tempfile.TemporaryDirectory(prefix='vhu-vhost-user-json.') as tmp:
        seen = set()
        for path in descriptors:
            d = check_descriptor(path)
            if d is None or d.get('type') not in VHUD_TYPE:
                if d is not None:
                    fail(f'{path}: type {d.get("type")!r} is not one vhud serves')
                continue
            seen.add(d['type'])
            vtype = VHUD_TYPE[d['type']]
            if not os.path.basename(d['binary']) == 'vhud-' + vtype:
                fail(f'{path}: binary {d["binary"]} is not a vhud-{vtype} link')
            if root:
                binary = root + d['binary']
            else:
                binary = os.path.join(tmp, 'vhud-' + vtype)
                os.symlink(os.path.abspath(vhud), binary)
            if not os.access(binary, os.X_OK):
                fail(f'{path}: binary {binary} is not executable')
                continue
            # as management software runs it, then with options it must ignore, then as vhud TYPE
            for argv in ([binary, '--print-capabilities'],
                         [binary, '--socket-path', '/nonexistent/x', '--bogus',
                          '--print-capabilities', '--queue-size', 'lots'],
                         [vhud, vtype, '--print-capabilities']):
                r = run(argv)
                what = ' '.join(os.path.basename(a) if a.startswith('/') else a for a in argv)
                if r.returncode != 0 or r.stderr:
                    fail(f'{what}: exit {r.returncode}, stderr {r.stderr!r}')
                    continue
                feats = check_capabilities(what, r.stdout, d['type'])
            print(f'  {os.path.basename(path)}: {d["type"]} -> {d["binary"]}, capabilities '
                  f'{sorted(feats) if feats else "(no features member)"}')
            if d['type'] == 'block':
                check_blk_features(binary, vhuctl, tmp, feats)
        if seen != set(VHUD_TYPE):
            fail(f'descriptors for {sorted(seen)}, expected {sorted(VHUD_TYPE)}')
    if failures:
        print(f'vhost-user-json: {len(failures)} failure(s)', file=sys.stderr)
        return 1
    print('vhost-user-json: ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
