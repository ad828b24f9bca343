#!/usr/bin/env python3
"""Disks end to end: a Debian 12 kernel under `vireo run --engine dbt`
with two virtio-blk disks, driven by tests/linux/disk.sh inside the guest.

usage: disk.py VIREO MKGUEST GUEST_DIR FLAVOUR CPUS

The host makes a 64 MiB ext4 image (vda, given with QEMU's spelling
-drive if=none + -device virtio-blk-pci,serial=) and a small read-only one
holding a file (vdb, Vireo's --disk PATH,readonly). The guest mounts vda,
writes 4 MiB of random bytes and a text file, syncs, reads them back after a
remount, trims, and finds vdb read-only and unwritable. After the power-off
the host checks vda with e2fsck -fn (clean), reads the files back with
debugfs (the guest's SHA-256 and text) and finds vdb's image unchanged.
Skipped (77) when the packages cannot be downloaded or e2fsprogs is missing.
"""
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

vireo, mkguest, guest_dir, flavour, cpus = sys.argv[1:6]
here = os.path.dirname(os.path.abspath(__file__))
LIMIT = int(os.environ.get("LINUX_BOOT_TIMEOUT", "400"))
TEXT = b"written by a Vireo guest\n"


def newc(name, data, mode):
    """One cpio newc entry."""
    header = "070701" + "".join(f"{v:08X}" for v in (
        0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    out = header.encode() + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def fail(why, output=""):
    if output:
        print(output)
    print(f"FAIL disks, {flavour} kernel, {cpus} vCPU(s): {why}")
    sys.exit(1)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


for tool in ("mkfs.ext4", "e2fsck", "debugfs"):
    if not shutil.which(tool) and not os.path.exists("/sbin/" + tool):
        print(f"SKIP: {tool} is missing (Debian: apt-get install e2fsprogs)")
        sys.exit(77)
os.environ["PATH"] += ":/sbin:/usr/sbin"

p = subprocess.run([mkguest, "--out", guest_dir, "--flavour", flavour], capture_output=True, text=True)
if p.returncode == 3:
    print(f"SKIP: cannot download the Debian packages: {p.stderr.strip().splitlines()[-1]}")
    sys.exit(77)
if p.returncode != 0:
    fail(f"tools/mkguest failed (status {p.returncode})", p.stdout + p.stderr)
kernel, initrd = p.stdout.split()[-2:]

tmp = tempfile.mkdtemp(prefix="vireo-disk-")
rw, ro, ro_files = (os.path.join(tmp, n) for n in ("rw.img", "ro.img", "ro"))
os.mkdir(ro_files)
with open(os.path.join(ro_files, "readme.txt"), "w") as f:
    f.write("a read-only disk\n")
subprocess.run(["mkfs.ext4", "-q", "-F", rw, "64M"], check=True)
subprocess.run(["mkfs.ext4", "-q", "-F", "-d", ro_files, ro, "8M"], check=True)
ro_sum = sha256(ro)

test_initrd = os.path.join(tmp, "initrd.img")
script = open(os.path.join(here, "disk.sh"), "rb").read()
extra = newc("vireo", b"", 0o40755) + newc("vireo/disk.sh", script, 0o100755) + newc("TRAILER!!!", b"", 0)
with open(test_initrd, "wb") as f:
    f.write(open(initrd, "rb").read())
    f.write(gzip.compress(extra))

cmd = [vireo, "run", "--engine", "dbt", "--cpus", cpus, "--memory", "512M", "--kernel", kernel,
       "--initrd", test_initrd, "--cmdline", "console=ttyS0 vireo.script=/vireo/disk.sh",
       "-drive", f"file={rw},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,serial=vireo-disk",
       "--disk", f"{ro},readonly"]
print("running:", " ".join(cmd))
start = time.monotonic()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
lines = []
watchdog = threading.Timer(LIMIT, proc.kill)
watchdog.start()
for raw in proc.stdout:
    lines.append(raw.decode(errors="replace").rstrip("\r\n"))
status = proc.wait()
timed_out = not watchdog.is_alive()
watchdog.cancel()
output = "\n".join(lines)
print(output)
print(f"INFO {time.monotonic() - start:.1f} s from start to power-off")

if timed_out:
    fail(f"no power-off within {LIMIT} s")
exits = [m.group(1) for m in (re.match(r"VIREO-EXIT (\d+)$", l) for l in lines) if m]
if exits != ["0"]:
    fail(f"the guest's script reported {exits or 'nothing'} (want one VIREO-EXIT 0)")
bad = [l for l in lines if re.search(r"BUG:|WARNING:|Call Trace|Kernel panic|EXT4-fs error", l)]
if bad:
    fail(f"the console shows {bad[0]!r}")
passes = [l for l in lines if l.startswith("PASS ")]
if len(passes) < 15 or any(l.startswith("FAIL ") for l in lines):
    fail(f"{len(passes)} checks passed inside the guest")
if status != 0:
    fail(f"vireo exited with status {status}, not 0 (ACPI power-off)")

sums = [l.split()[2] for l in lines if l.startswith("SHA256 random.bin ")]
fsck = subprocess.run(["e2fsck", "-fn", rw], capture_output=True, text=True)
print(fsck.stdout + fsck.stderr)
if fsck.returncode != 0:
    fail(f"e2fsck -fn of the written image: status {fsck.returncode}")
random_bin = subprocess.run(["debugfs", "-R", "cat /random.bin", rw], capture_output=True).stdout
hello = subprocess.run(["debugfs", "-R", "cat /hello.txt", rw], capture_output=True).stdout
if len(random_bin) != 4 << 20 or [hashlib.sha256(random_bin).hexdigest()] != sums:
    fail(f"random.bin on the host: {len(random_bin)} bytes, SHA-256 {hashlib.sha256(random_bin).hexdigest()}, "
         f"the guest said {sums}")
if hello != TEXT:
    fail(f"hello.txt on the host: {hello!r}")
if sha256(ro) != ro_sum:
    fail("the read-only image changed")
shutil.rmtree(tmp)
print(f"DONE disks, {flavour} kernel, {cpus} vCPU(s): {len(passes)} checks passed in the guest; "
      "e2fsck clean, files match on the host, read-only image unchanged")
