#!/usr/bin/env python3
"""Disks end to end: a Debian 12 guest (guest.py) with three virtio-blk
disks, driven by tests/linux/disk.sh inside it.

usage: disk.py VIREO MKGUEST GUEST_DIR FLAVOUR CPUS

vda: a 64 MiB raw ext4 image, given with QEMU's spelling (-drive if=none
  + -device virtio-blk-pci,serial=). The guest writes 4 MiB of random bytes
  and a text file, syncs, reads them back after a remount and trims. The
  host then checks it with e2fsck -fn (clean) and reads the files back with
  debugfs (the guest's SHA-256 and text).
vdb: a small raw ext4 image holding a file, read-only (--disk PATH,readonly):
  the guest finds it read-only and unwritable; the host finds it unchanged.
vdc: a qcow2 overlay made by qemu-img over a raw ext4 base holding a file
  (qemu-img create -f qcow2 -b base -F raw). The guest reads the base's
  file and writes its own; the host finds the base unchanged, `qemu-img
  check` clean, and both files in the overlay (qemu-img convert, debugfs).
Skipped (77) when the packages cannot be downloaded or e2fsprogs or
qemu-img is missing.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from guest import Guest, SKIP

vireo, mkguest, guest_dir, flavour, cpus = sys.argv[1:6]
TEXT = b"written by a Vireo guest\n"
OVERLAY_TEXT = b"written into a qcow2 overlay\n"

os.environ["PATH"] += ":/sbin:/usr/sbin"
for tool in ("mkfs.ext4", "e2fsck", "debugfs", "qemu-img"):
    if not shutil.which(tool):
        print(f"SKIP: {tool} is missing (Debian: apt-get install e2fsprogs qemu-utils)")
        sys.exit(SKIP)

guest = Guest(vireo, mkguest, guest_dir, flavour, cpus, f"disks, {flavour} kernel, {cpus} vCPU(s)")


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def debugfs_cat(image, name):
    return subprocess.run(["debugfs", "-R", f"cat /{name}", image], capture_output=True).stdout


def ext4_with(path, size, name, text):
    """An ext4 image of size holding one file."""
    files = path + ".files"
    os.mkdir(files)
    with open(os.path.join(files, name), "w") as f:
        f.write(text)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", files, path, size], check=True)


tmp = tempfile.mkdtemp(prefix="vireo-disk-")
rw, ro, base, overlay = (os.path.join(tmp, n) for n in ("rw.img", "ro.img", "base.img", "overlay.qcow2"))
subprocess.run(["mkfs.ext4", "-q", "-F", rw, "64M"], check=True)
ext4_with(ro, "8M", "readme.txt", "a read-only disk\n")
ext4_with(base, "32M", "base.txt", "from the base image\n")
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay], check=True)
ro_sum, base_sum = sha256(ro), sha256(base)

status, lines = guest.boot("disk.sh", vireo_args=[
    "-drive", f"file={rw},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,serial=vireo-disk",
    "--disk", f"{ro},readonly", "--disk", overlay])
if any("EXT4-fs error" in l for l in lines):
    guest.fail("the guest's ext4 reported an error")
passes = guest.judge(status, lines, 20)

sums = [l.split()[2] for l in lines if l.startswith("SHA256 random.bin ")]
fsck = subprocess.run(["e2fsck", "-fn", rw], capture_output=True, text=True)
print(fsck.stdout + fsck.stderr)
if fsck.returncode != 0:
    guest.fail(f"e2fsck -fn of the written image: status {fsck.returncode}")
random_bin = debugfs_cat(rw, "random.bin")
if len(random_bin) != 4 << 20 or [hashlib.sha256(random_bin).hexdigest()] != sums:
    guest.fail(f"random.bin on the host: {len(random_bin)} bytes, SHA-256 "
               f"{hashlib.sha256(random_bin).hexdigest()}, the guest said {sums}")
if debugfs_cat(rw, "hello.txt") != TEXT:
    guest.fail(f"hello.txt on the host: {debugfs_cat(rw, 'hello.txt')!r}")
if sha256(ro) != ro_sum:
    guest.fail("the read-only image changed")

if sha256(base) != base_sum:
    guest.fail("the qcow2 overlay's base image changed")
check = subprocess.run(["qemu-img", "check", overlay], capture_output=True, text=True)
print(check.stdout + check.stderr)
if check.returncode != 0:
    guest.fail(f"qemu-img check of the overlay: status {check.returncode}")
merged = os.path.join(tmp, "merged.img")
subprocess.run(["qemu-img", "convert", "-O", "raw", overlay, merged], check=True)
fsck = subprocess.run(["e2fsck", "-fn", merged], capture_output=True, text=True)
if fsck.returncode != 0:
    guest.fail(f"e2fsck -fn of the overlay's content: status {fsck.returncode}\n{fsck.stdout}")
if debugfs_cat(merged, "overlay.txt") != OVERLAY_TEXT or debugfs_cat(merged, "base.txt") != b"from the base image\n":
    guest.fail("the overlay's content lacks the guest's file or the base's")
shutil.rmtree(tmp)
print(f"DONE disks, {flavour} kernel, {cpus} vCPU(s): {passes} checks passed in the guest; e2fsck clean, "
      "files match on the host, read-only image and qcow2 base unchanged, qemu-img check clean")
