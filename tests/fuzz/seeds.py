#!/usr/bin/env python3
"""Writes a few well-formed inputs for each fuzz target into CORPUS/TARGET/,
so the fuzzers start from requests the devices accept and mutate from there.
The formats are described at the top of virtq.c and device.c.

usage: seeds.py CORPUS
"""
import os
import struct
import sys

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
    "virtio-console": {
        "transmit": op_setup(4) + op_desc(1, 0, 0, 12, NEXT, 1) + op_desc(1, 1, 64, 4, 0) + op_post(1, 0) + op_kick(1),
        "receive-buffer": op_setup(4) + op_desc(0, 0, 0, 64, WRITE) + op_post(0, 0) + op_kick(0),
        "emergency-write": op_setup(4) + op_write(0x2008, 2, ord("x")),
    },
}

for target, inputs in seeds.items():
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    for name, data in inputs.items():
        with open(os.path.join(corpus, target, "seed-" + name), "wb") as f:
            f.write(data)
