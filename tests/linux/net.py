#!/usr/bin/env python3
"""virtio-net end to end: a Debian 12 guest (guest.py) on a real back end
talks TCP to a server this test runs, both ways, and the test checks what
arrived on each side.

usage: net.py VIREO MKGUEST GUEST_DIR user|tap CPUS

user: libslirp user networking (-netdev user). The server listens on the
  host's 127.0.0.1; the guest gets 10.0.2.15 from slirp's DHCP (udhcpc) and
  connects to 10.0.2.2, which slirp maps to the host's loopback.
tap: the test makes its own network namespace with a multi-queue tap device
  vtap0 at 10.0.3.1/24 and runs the server and vireo inside it (-netdev
  tap,queues=CPUS -device virtio-net-pci,mq=on); the guest takes 10.0.3.2,
  pings 10.0.3.1, exchanges data from each vCPU (so each queue pair
  transmits) and checks it has CPUS queue pairs. The namespace is deleted
  at the end whatever happens. Skipped (77) when namespaces or tap devices
  cannot be made here (not root).

In both, the guest sends `seq 1 30000` (168894 bytes); the server checks
them and answers "PONG <sha256 of what it got>" followed by the same bytes,
which the guest checks. Then the guest pushes 8 MiB (tap) or 2 MiB (user)
to a sink port and the test prints the throughput (INFO: it asserts no
speed).
"""
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

from guest import Guest, SKIP

vireo, mkguest, guest_dir, mode, cpus = sys.argv[1:6]
INSIDE = os.environ.get("VIREO_NET_TEST_NS")  # set when re-run inside the namespace
EXPECT = "".join(f"{i}\n" for i in range(1, 30001)).encode()
SINK_BYTES = (8 if mode == "tap" else 2) << 20  # slirp is the slower path


class Server:
    """The echo server and the sink, one thread each, bounded by timeouts."""

    def __init__(self, addr):
        self.echo = socket.create_server((addr, 0))
        self.sink = socket.create_server((addr, 0))
        self.echo.settimeout(LIMIT_SERVER)
        self.sink.settimeout(LIMIT_SERVER)
        self.received, self.problems, self.sunk, self.sink_seconds = [], [], 0, 0.0
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.run_echo, self.run_sink)]
        for t in self.threads:
            t.start()

    def port(self, s):
        return s.getsockname()[1]

    def run_echo(self):
        # One connection per vCPU: each must bring exactly EXPECT.
        for _ in range(int(cpus)):
            try:
                conn, peer = self.echo.accept()
            except OSError as e:
                self.problems.append(f"echo server: no connection ({e})")
                return
            with conn:
                conn.settimeout(60)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                    conn.sendall(b"PONG " + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
                except OSError as e:
                    self.problems.append(f"echo server: {e}")
                self.received.append(data)

    def run_sink(self):
        try:
            conn, _ = self.sink.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(60)
            start = None
            try:
                while chunk := conn.recv(1 << 20):
                    start = start or time.monotonic()
                    self.sunk += len(chunk)
            except OSError as e:
                self.problems.append(f"sink: {e}")
            self.sink_seconds = time.monotonic() - start if start else 0.0


LIMIT_SERVER = 300


LABEL = f"virtio-net over {mode}, {cpus} vCPU(s)"
# Outside the namespace, where Debian's archive can be reached: mkguest may
# download; inside, it finds what it made.
guest = Guest(vireo, mkguest, guest_dir, "cloud", cpus, LABEL)


def run_test(server_addr, guest_server, vireo_args, prefix=()):
    server = Server(server_addr)
    extra = (f"vireo.test.net={mode} vireo.test.server={guest_server}:{server.port(server.echo)} "
             f"vireo.test.sink={server.port(server.sink)} vireo.test.sinkbytes={SINK_BYTES} "
             f"vireo.test.queues={cpus if mode == 'tap' else 1}")
    status, lines = guest.boot("net.sh", extra, vireo_args, prefix)
    for t in server.threads:
        t.join(5)
    for p in server.problems:
        print(f"INFO {p}")
    if len(server.received) != int(cpus) or any(d != EXPECT for d in server.received):
        got = [len(d) for d in server.received]
        guest.fail(f"the server wanted {cpus} connection(s) of {len(EXPECT)} bytes each, got {got}")
    print(f"PASS host: the server received {cpus} x {len(EXPECT)} bytes, all as sent")
    if server.sunk:
        mbps = server.sunk * 8 / server.sink_seconds / 1e6 if server.sink_seconds else 0
        print(f"INFO guest -> host TCP over {mode}: {server.sunk} bytes in {server.sink_seconds:.2f} s, "
              f"{mbps:.1f} Mbit/s (busybox dd | nc, dbt engine)")
    passes = guest.judge(status, lines, 6)
    print(f"DONE {LABEL}: {passes} checks passed in the guest, the host's check passed, powered off")


if mode == "user":
    run_test("127.0.0.1", "10.0.2.2", ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"])
elif mode == "tap" and INSIDE:
    run_test("10.0.3.1", "10.0.3.1",
             ["-netdev", f"tap,id=n0,ifname=vtap0,script=no,downscript=no,queues={cpus}",
              "-device", "virtio-net-pci,netdev=n0,mq=on"])
elif mode == "tap":
    ns = f"vireo-test-{os.getpid()}"

    def ip(*args):
        return subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=30)

    if os.geteuid() != 0:
        print("SKIP: the tap test needs root (a network namespace and a tap device)")
        sys.exit(SKIP)
    p = ip("netns", "add", ns)
    if p.returncode != 0:
        print(f"SKIP: cannot make a network namespace: {p.stderr.strip()}")
        sys.exit(SKIP)
    try:
        for args in (["tuntap", "add", "dev", "vtap0", "mode", "tap", "multi_queue"],
                     ["addr", "add", "10.0.3.1/24", "dev", "vtap0"],
                     ["link", "set", "vtap0", "up"], ["link", "set", "lo", "up"]):
            p = ip("netns", "exec", ns, "ip", *args)
            if p.returncode != 0:
                print(f"SKIP: ip {' '.join(args)} in the namespace: {p.stderr.strip()}")
                sys.exit(SKIP)
        env = dict(os.environ, VIREO_NET_TEST_NS=ns)
        sys.exit(subprocess.run(["ip", "netns", "exec", ns, sys.executable] + sys.argv, env=env).returncode)
    finally:
        ip("netns", "del", ns)
else:
    print(f"usage: net.py VIREO MKGUEST GUEST_DIR user|tap CPUS (not '{mode}')")
    sys.exit(2)
