#!/usr/bin/env python3
"""The vireo command end to end: power-off, triple fault and debug-exit
statuses, the serial file back end, the QEMU spellings giving the same
run as Vireo's own options, and disks in each of their spellings.

usage: cli.py VIREO DEMO_GUEST.elf MULTIBOOT_GUEST.elf
"""
import os
import struct
import subprocess
import sys
import tempfile

vireo, demo, multiboot = sys.argv[1:4]
tmp = tempfile.mkdtemp(prefix="vireo-cli-")
failures = count = 0


def run(args):
    return subprocess.run([vireo] + args, capture_output=True, text=True, timeout=60)


def check(name, ok, detail):
    global failures, count
    count += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
    failures += not ok


# The demo powers off through ACPI: status 0, no error line.
p = run(["run", "--kernel", demo])
check("power-off status 0", p.returncode == 0 and "powering off" in p.stdout and p.stderr == "",
      f"status {p.returncode}, stderr {p.stderr!r}")

# A multiboot image (address fields) that loads an empty IDT and raises #BP:
# #BP -> #GP -> #DF -> triple fault.
base = 0x100000
code = b"\x0f\x01\x1d" + struct.pack("<I", base + 48) + b"\xcc" + b"\xf4" * 8
image = struct.pack("<8I", 0x1BADB002, 0x10000, (-(0x1BADB002 + 0x10000)) & 0xFFFFFFFF,
                    base, base, 0, 0, base + 32)
image += code.ljust(16, b"\x90") + bytes(16)
path = os.path.join(tmp, "triple.bin")
open(path, "wb").write(image)
p = run(["run", "--engine", "dbt", "--kernel", path])
check("triple fault status 2", p.returncode == 2 and "triple fault" in p.stderr and "RIP 0x10002" in p.stderr,
      f"status {p.returncode}, stderr {p.stderr!r}")

# The serial console to a file; the guest's debug-exit status comes through.
out = os.path.join(tmp, "serial.txt")
p = run(["run", "--kernel", multiboot, "--serial", "file:" + out, "--cmdline", "multiboot-test alpha=1 beta"])
text = open(out).read() if os.path.exists(out) else ""
check("serial to a file", "PASS magic" in text and p.stdout == "", f"stdout {p.stdout[:80]!r}, file {text[:80]!r}")
check("debug-exit status", p.returncode == 3, f"status {p.returncode} (the guest fails its module checks: want 3)")

# Vireo's options and the QEMU spellings give the same run.
own = run(["run", "--engine", "dbt", "--memory", "256M", "--cpus", "2", "--kernel", multiboot,
           "--cmdline", "multiboot-test alpha=1 beta"])
qemu = run(["-accel", "tcg", "-m", "256", "-smp", "2", "-kernel", multiboot, "-append", "multiboot-test alpha=1 beta",
            "-nographic", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-display", "none",
            "-machine", "accel=tcg", "-serial", "stdio"])
check("QEMU spellings run the same guest", own.returncode == qemu.returncode and own.stdout == qemu.stdout,
      f"statuses {own.returncode}/{qemu.returncode}")
check("memory size reaches the guest", "PASS mem-upper-matches-mmap" in own.stdout, own.stdout[-200:])

# Disks in each spelling: the VM is built with them and ends cleanly,
# leaving the images as they were (the demo guest has no disk driver).
disk = os.path.join(tmp, "disk.img")
open(disk, "wb").write(bytes(range(256)) * 4096)
for spelling in (["--disk", disk], ["--disk", disk + ",readonly,format=raw"],
                 ["-drive", f"file={disk},format=raw,if=virtio"],
                 ["-drive", f"file={disk},if=none,id=d0,readonly=on", "-device",
                  "virtio-blk-pci,drive=d0,serial=SN1,num-queues=4"]):
    p = run(["run", "--kernel", demo] + spelling)
    check(f"a disk with {' '.join(spelling)}", p.returncode == 0 and p.stderr == "" and
          open(disk, "rb").read() == bytes(range(256)) * 4096, f"status {p.returncode}, stderr {p.stderr!r}")

p = run(["--version"])
check("--version", p.returncode == 0 and p.stdout.startswith("vireo "), p.stdout)
p = run(["--help"])
check("--help", p.returncode == 0 and "usage: vireo run" in p.stdout, p.stdout)

print(f"DONE {count} checks, {failures} failed")
sys.exit(1 if failures else 0)
