#!/usr/bin/env python3
"""Writes a few well-formed inputs for each fuzz target into CORPUS/TARGET/,
so the fuzzers start from requests the devices accept and mutate from there.
The formats are described at the top of virtq.c and device.c.

usage: seeds.py CORPUS
"""
import os
import struct
import sys
import zlib

corpus = sys.argv[1]
NEXT, WRITE, INDIRECT = 1, 2, 4
IMAGE = 0x1000


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def virtq(log2size, flags, avail_idx, descs, heads, extra=b"", extra_at=0x800):
    """A queue of 2**log2size entries: descriptors, then the available ring,
    then extra bytes (indirect tables) at IMAGE + extra_at."""
    size = 1 << log2size
    table = b"".join(descs).ljust(16 * size, b"\0")
    ring = struct.pack("<HH", 0, avail_idx) + b"".join(struct.pack("<H", h) for h in heads).ljust(2 * size, b"\0")
    image = (table + ring).ljust(extra_at, b"\0") + extra
    return struct.pack("<BBH", log2size, flags, avail_idx) + image


def op_setup(features=0):
    return bytes([0]) + struct.pack("<Q", features)


def op_desc(q, i, off, length, flags, nxt=0):
    return bytes([5]) + struct.pack("<BBHHBB", q, i, off, length, flags, nxt)


def op_post(q, head):
    return bytes([6, q, head])


def op_kick(q):
    return bytes([7, q])


def op_write(off, size_log2, value):
    return bytes([1]) + struct.pack("<HBQ", off, size_log2, value)


def op_poke(off, data):
    """Writes data at off (even) into the window."""
    return bytes([4]) + struct.pack("<HB", off // 2, len(data)) + data


# virtio-blk: a request's header, data and status byte in the buffer area
# (device.c: BUFFERS, 0x10000 into the window pokes write).
BLK_F = (1 << 2) | (1 << 9) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 29)


def blk_request(q, first, kind, sector, data_len, writable, data=b""):
    """Descriptors first.. of queue q: header, data (if any), status."""
    ops = op_poke(0x10000, struct.pack("<IIQ", kind, 0, sector))
    if data:
        ops += op_poke(0x10100, data)
    ops += op_desc(q, first, 0, 16, NEXT, first + 1)
    nxt = first + 1
    if data_len:
        ops += op_desc(q, nxt, 0x100, data_len, NEXT | (WRITE if writable else 0), nxt + 1)
        nxt += 1
    ops += op_desc(q, nxt, 0x80, 1, WRITE)
    return ops + op_post(q, first) + op_kick(q)


def qcow2(cluster_bits=9, size=1 << 20, version=3, data=(), zeros=(), compressed=(), refcount_order=4,
          backing=b"", extensions=b""):
    """A small qcow2 image: header, L1 table, refcount table and block, L2
    tables, then data clusters (guest cluster numbers in data), zero
    clusters and compressed clusters (deflate, packed after the data)."""
    cs = 1 << cluster_bits
    l2_entries = cs // 8
    l1_entries = -(-size // (cs * l2_entries))
    clusters = [bytearray(cs) for _ in range(4)]  # header, L1, refcount table, refcount block
    l2 = {}

    def entry(guest, value):
        i = guest // l2_entries
        if i not in l2:
            l2[i] = len(clusters)
            clusters.append(bytearray(cs))
            struct.pack_into(">Q", clusters[1], 8 * i, (1 << 63) | l2[i] * cs)
        struct.pack_into(">Q", clusters[l2[i]], 8 * (guest % l2_entries), value)

    for g in data:
        clusters.append(bytearray(bytes([g & 0xff, 0xa5]) * (cs // 2)))
        entry(g, (1 << 63) | (len(clusters) - 1) * cs)
    for g in zeros:
        entry(g, 1)
    packed = bytearray()
    start = len(clusters) * cs
    x = 62 - (cluster_bits - 8)
    ranges = []
    for g in compressed:
        z = zlib.compressobj(9, zlib.DEFLATED, -12)
        blob = z.compress(bytes([g & 0xff]) * cs) + z.flush()
        host = start + len(packed)
        sectors = (host % 512 + len(blob) + 511) // 512
        entry(g, (1 << 62) | ((sectors - 1) << x) | host)
        packed += blob
        ranges.append((host // 512 * 512, sectors * 512))
    packed += bytes(-len(packed) % cs)
    total = len(clusters) + len(packed) // cs
    counts = [1] * len(clusters) + [0] * (len(packed) // cs)
    for host, length in ranges:  # each compressed cluster counts every host cluster it touches
        for c in range(host // cs, min(-(-(host + length) // cs), total)):
            counts[c] += 1
    for i in range(total):  # refcount block entries, refcount_order bits each
        bits = 1 << refcount_order
        bit = i * bits
        if bits >= 8:
            clusters[3][bit // 8:bit // 8 + bits // 8] = counts[i].to_bytes(bits // 8, "big")
        else:
            clusters[3][bit // 8] |= counts[i] << (bit % 8)
    struct.pack_into(">Q", clusters[2], 0, 3 * cs)
    h = clusters[0]
    header_length = 104 if version == 3 else 72
    backing_at = header_length + len(extensions) + 8 if backing else 0
    struct.pack_into(">IIQIIQIIQQIIQ", h, 0, 0x514649FB, version, backing_at, len(backing), cluster_bits, size, 0,
                     l1_entries, cs, 2 * cs, 1, 0, 0)
    if version == 3:
        struct.pack_into(">QQQII", h, 72, 0, 0, 0, refcount_order, header_length)
    h[header_length:header_length + len(extensions)] = extensions
    h[backing_at:backing_at + len(backing)] = backing
    return b"".join(clusters) + bytes(packed)


feature_names = struct.pack(">II", 0x6803F857, 48) + struct.pack(">BB46s", 0, 0, b"dirty bit")
backing_format = struct.pack(">II", 0xE2792ACA, 3) + b"raw\0\0\0\0\0"


def op_data(off, data):
    """Bytes in the buffers' area, where op_desc's offsets point."""
    return bytes([8]) + struct.pack("<HB", off, len(data)) + data


# virtio-net: MAC, MRG_RXBUF, STATUS, CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR; queue 0
# receives, 1 transmits, 2 is the control queue.
NET_FEATURES = (1 << 5) | (1 << 15) | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 23)
GUEST_MAC = bytes.fromhex("525400123456")
# An ARP request from 10.0.2.15 for 10.0.2.2 (slirp answers it), padded to 60 bytes.
ARP = (b"\xff" * 6 + GUEST_MAC + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + GUEST_MAC +
       bytes([10, 0, 2, 15]) + b"\0" * 6 + bytes([10, 0, 2, 2])).ljust(60, b"\0")
NET_HDR = b"\0" * 12


def net_ctrl(command, window_off=0x200):
    """A control request: command bytes (class, cmd, data), then a 1-byte ack."""
    return (op_data(window_off, command) + op_desc(2, 0, window_off, len(command), NEXT, 1) +
            op_desc(2, 1, window_off + 0x100, 1, WRITE) + op_post(2, 0) + op_kick(2))


buf = 0x8000  # guest RAM the virtq seeds point their buffers at
seeds = {
    "virtq": {
        "one-writable": virtq(3, 0, 1, [desc(buf, 64, WRITE)], [0]),
        "read-then-write": virtq(3, 0, 1, [desc(buf, 16, NEXT, 1), desc(buf + 64, 8, NEXT | WRITE, 2),
                                           desc(buf + 128, 64, WRITE)], [0]),
        "indirect": virtq(3, 2, 1, [desc(IMAGE + 0x800, 48, INDIRECT)], [0],
                          desc(buf, 16, NEXT, 1) + desc(buf + 64, 32, NEXT | WRITE, 2) + desc(buf + 128, 8, WRITE)),
        "direct-then-indirect": virtq(3, 2, 1, [desc(buf, 16, NEXT, 1), desc(IMAGE + 0x800, 16, INDIRECT)], [0],
                                      desc(buf + 64, 32, WRITE)),
        "event-idx-batch": virtq(4, 1 | 4, 3, [desc(buf, 8, WRITE), desc(buf + 8, 8, WRITE), desc(buf + 16, 8, WRITE)],
                                 [0, 1, 2]),
        "reset-half-way": virtq(2, 8, 2, [desc(buf, 8, WRITE), desc(buf + 8, 8)], [0, 1]),
    },
    "virtio-rng": {
        "two-requests": op_setup() + op_desc(0, 0, 0, 64, WRITE) + op_desc(0, 1, 64, 32, WRITE) + op_post(0, 0) +
        op_post(0, 1) + op_kick(0),
        "event-idx": op_setup(1 << 29) + op_desc(0, 0, 0, 16, WRITE) + op_post(0, 0) + op_kick(0),
        "reset-and-again": op_setup() + op_desc(0, 0, 0, 16, WRITE) + op_post(0, 0) + op_kick(0) +
        op_write(0x14, 0, 0) + op_setup() + op_post(0, 0) + op_kick(0),
    },
    "virtio-blk": {
        "read": op_setup(BLK_F) + blk_request(0, 0, 0, 1, 1024, True),
        "write": op_setup(BLK_F) + blk_request(1, 0, 1, 2, 512, False, b"vireo" * 20),
        "flush": op_setup(BLK_F) + blk_request(0, 0, 4, 0, 0, False),
        "get-id": op_setup(BLK_F) + blk_request(0, 0, 8, 0, 20, True),
        "discard": op_setup(BLK_F) + blk_request(0, 0, 11, 0, 16, False, struct.pack("<QII", 8, 8, 0)),
        "write-zeroes": op_setup(BLK_F) + blk_request(0, 0, 13, 0, 16, False, struct.pack("<QII", 16, 8, 1)),
        "past-the-end": op_setup(BLK_F) + blk_request(0, 0, 0, 2047, 1024, True),
        "write-then-reset": op_setup(BLK_F) + blk_request(0, 0, 1, 4, 4096, False) + op_write(0x14, 0, 0) +
        op_setup(BLK_F) + blk_request(0, 0, 0, 4, 4096, True),
    },
    "virtio-net": {
        "arp-and-reply": op_setup(NET_FEATURES) + op_desc(0, 0, 0x1000, 1526, WRITE) + op_post(0, 0) + op_kick(0) +
        op_data(0, NET_HDR + ARP) + op_desc(1, 0, 0, 72, 0) + op_post(1, 0) + op_kick(1),
        "header-apart": op_setup(NET_FEATURES) + op_data(0, NET_HDR) + op_data(0x40, ARP) +
        op_desc(1, 0, 0, 12, NEXT, 1) + op_desc(1, 1, 0x40, 60, 0) + op_post(1, 0) + op_kick(1),
        "small-receive-buffers": op_setup(NET_FEATURES) + op_desc(0, 0, 0x1000, 16, WRITE) +
        op_desc(0, 1, 0x1100, 16, WRITE) + op_desc(0, 2, 0x1200, 64, WRITE) + op_post(0, 0) + op_post(0, 1) +
        op_post(0, 2) + op_kick(0) + op_data(0, NET_HDR + ARP) + op_desc(1, 0, 0, 72, 0) + op_post(1, 0) +
        op_kick(1),
        "promisc": op_setup(NET_FEATURES) + net_ctrl(bytes([0, 0, 1])),
        "mac-addr-set": op_setup(NET_FEATURES) + net_ctrl(bytes([1, 1]) + bytes.fromhex("525400abcdef")),
        "mac-table-set": op_setup(NET_FEATURES) + net_ctrl(bytes([1, 0]) + struct.pack("<I", 1) + GUEST_MAC +
                                                             struct.pack("<I", 0)),
        "mq-without-mq": op_setup(NET_FEATURES) + net_ctrl(bytes([4, 0]) + struct.pack("<H", 2)),
    },
    "virtio-console": {
        "transmit": op_setup(4) + op_desc(1, 0, 0, 12, NEXT, 1) + op_desc(1, 1, 64, 4, 0) + op_post(1, 0) + op_kick(1),
        "receive-buffer": op_setup(4) + op_desc(0, 0, 0, 64, WRITE) + op_post(0, 0) + op_kick(0),
        "emergency-write": op_setup(4) + op_write(0x2008, 2, ord("x")),
    },
    "qcow2": {
        "v3-512": qcow2(data=(0, 1, 70, 2047), zeros=(5,), compressed=(3, 64), extensions=feature_names),
        "v2-4k": qcow2(cluster_bits=12, version=2, size=8 << 20, data=(0, 600, 1000)),
        "v3-1k-refcount1": qcow2(cluster_bits=10, refcount_order=0, data=(2, 3), compressed=(9,)),
        "v3-refcount64": qcow2(refcount_order=6, size=64 << 10, data=(1,), zeros=(0,)),
        "v3-backing": qcow2(data=(4,), backing=b"image", extensions=backing_format),
    },
}

for target, inputs in seeds.items():
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    for name, data in inputs.items():
        with open(os.path.join(corpus, target, "seed-" + name), "wb") as f:
            f.write(data)
