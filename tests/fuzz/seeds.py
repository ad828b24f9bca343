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
}

for target, inputs in seeds.items():
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    for name, data in inputs.items():
        with open(os.path.join(corpus, target, "seed-" + name), "wb") as f:
            f.write(data)
