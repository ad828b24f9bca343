#!/usr/bin/env python3
"""Boots a Debian 12 kernel to its initramfs under `vireo run --engine dbt`,
runs tests/linux/check.sh inside it and judges what comes out.

usage: boot.py VIREO MKGUEST GUEST_DIR FLAVOUR CPUS

tools/mkguest builds the guest into GUEST_DIR (downloading the packages on
the first run); when apt cannot reach Debian's archive the test is skipped
(status 77). check.sh travels in a second cpio archive appended to the
initramfs, as the kernel allows. The test passes when the guest powers off
(status 0) after printing "VIREO-EXIT 0", with every check passing and no
BUG:/WARNING: line on the console. It prints how long the boot took.
"""
import gzip
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

vireo, mkguest, guest_dir, flavour, cpus = sys.argv[1:6]
here = os.path.dirname(os.path.abspath(__file__))
LIMIT = int(os.environ.get("LINUX_BOOT_TIMEOUT", "400"))


def newc(name, data, mode):
    """One cpio newc entry."""
    header = "070701" + "".join(f"{v:08X}" for v in (
        0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    out = header.encode() + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def fail(why, output=""):
    print(output)
    print(f"FAIL {flavour} kernel, {cpus} vCPU(s): {why}")
    sys.exit(1)


p = subprocess.run([mkguest, "--out", guest_dir, "--flavour", flavour], capture_output=True, text=True)
if p.returncode == 3:
    print(f"SKIP: cannot download the Debian packages: {p.stderr.strip().splitlines()[-1]}")
    sys.exit(77)
if p.returncode != 0:
    fail(f"tools/mkguest failed (status {p.returncode})", p.stdout + p.stderr)
kernel, initrd = p.stdout.split()[-2:]

tmp = tempfile.mkdtemp(prefix="vireo-linux-")
test_initrd = os.path.join(tmp, "initrd.img")
script = open(os.path.join(here, "check.sh"), "rb").read()
extra = newc("vireo", b"", 0o40755) + newc("vireo/check.sh", script, 0o100755) + newc("TRAILER!!!", b"", 0)
with open(test_initrd, "wb") as f:
    f.write(open(initrd, "rb").read())
    f.write(gzip.compress(extra))

cmdline = f"console=ttyS0 vireo.script=/vireo/check.sh vireo.test.cpus={cpus}"
cmd = [vireo, "run", "--engine", "dbt", "--cpus", cpus, "--memory", "512M", "--kernel", kernel,
       "--initrd", test_initrd, "--cmdline", cmdline]
print("running:", " ".join(cmd))
start = time.monotonic()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
lines, marks = [], {}
watchdog = threading.Timer(LIMIT, proc.kill)
watchdog.start()
for raw in proc.stdout:
    line = raw.decode(errors="replace").rstrip("\r\n")
    lines.append(line)
    now = time.monotonic() - start
    for key, pattern in (("first line", "Linux version"), ("init", "Run /init as init process"),
                         ("script done", "VIREO-EXIT")):
        if key not in marks and pattern in line:
            marks[key] = now
status = proc.wait()
timed_out = not watchdog.is_alive()
watchdog.cancel()
marks["power-off"] = time.monotonic() - start
output = "\n".join(lines)
print(output)
print("INFO times from process start: " + ", ".join(f"{k} {v:.1f} s" for k, v in marks.items()))

if timed_out:
    fail(f"no power-off within {LIMIT} s")
if not lines or "Linux version" not in lines[0]:
    fail("the console's first line is not the kernel's banner (console=ttyS0 without earlyprintk)")
exits = [m.group(1) for m in (re.match(r"VIREO-EXIT (\d+)$", l) for l in lines) if m]
if exits != ["0"]:
    fail(f"the guest's script reported {exits or 'nothing'} (want one VIREO-EXIT 0)")
bad = [l for l in lines if re.search(r"BUG:|WARNING:|Call Trace|Kernel panic", l)]
if bad:
    fail(f"the console shows {bad[0]!r}")
passes = [l for l in lines if l.startswith("PASS ")]
if len(passes) < 10 or any(l.startswith("FAIL ") for l in lines):
    fail(f"{len(passes)} checks passed inside the guest")
if status != 0:
    fail(f"vireo exited with status {status}, not 0 (ACPI power-off)")
print(f"DONE {flavour} kernel, {cpus} vCPU(s): {len(passes)} checks passed, powered off")
