#!/usr/bin/env python3
"""Boot benchmark (not a test): Debian's Linux kernel and tools/mkguest's
initramfs booted under `vireo run --engine dbt` and under
`qemu-system-x86_64 -accel tcg` with the same kernel, initramfs, memory and
vCPUs, in the same run. The guest runs `true` and powers off. Prints, per
machine, the median over the runs of:

  to init      wall-clock seconds from process start to the kernel's
               "Run /init as init process" line on the serial console
  guest time   the kernel's own timestamp on that line (its clock: what
               "boots to init in 1.7 s of guest time" means)
  power-off    wall-clock seconds from process start to the VMM's exit
  peak RSS     the VMM process's peak resident set (getrusage)

usage: tests/bench/linux-boot.py [--build DIR] [--flavour cloud|generic]
                                 [--cpus N] [--memory MiB] [--runs N]
"""
import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--build", default=os.path.join(root, "build"))
ap.add_argument("--flavour", default="cloud", choices=["cloud", "generic"])
ap.add_argument("--cpus", type=int, default=1)
ap.add_argument("--memory", type=int, default=512, help="MiB")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--timeout", type=int, default=300, help="seconds per boot")
args = ap.parse_args()

vireo = os.path.join(args.build, "tools", "vireo")
if not os.access(vireo, os.X_OK):
    sys.exit(f"linux-boot: {vireo} is not built (make)")
p = subprocess.run([os.path.join(root, "tools", "mkguest"), "--out", os.path.join(args.build, "guest"),
                    "--flavour", args.flavour], stdout=subprocess.PIPE, text=True)
if p.returncode != 0:
    sys.exit(f"linux-boot: tools/mkguest failed (status {p.returncode})")
kernel, initrd = p.stdout.split()[-2:]
cmdline = "console=ttyS0 vireo.run=true"

machines = {
    "vireo dbt": [vireo, "run", "--engine", "dbt", "--cpus", str(args.cpus), "--memory", f"{args.memory}M",
                  "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline],
}
qemu = shutil.which("qemu-system-x86_64")
if qemu:
    machines["qemu tcg"] = [qemu, "-accel", "tcg", "-smp", str(args.cpus), "-m", str(args.memory),
                            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
                            "-nodefaults", "-serial", "stdio", "-display", "none", "-no-reboot"]

INIT_LINE = re.compile(r"\[\s*(\d+\.\d+)\] Run /init as init process")
VERSION_LINE = re.compile(r"Linux version (\S+)")
version = "?"


def boot(cmd):
    """One boot: (to init, guest time at init, power-off, peak RSS in MiB)."""
    global version
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    to_init = guest_init = None
    tail = []
    deadline = start + args.timeout
    for raw in proc.stdout:
        line = raw.decode(errors="replace")
        tail = (tail + [line])[-20:]
        v = VERSION_LINE.search(line)
        if v:
            version = v.group(1)
        m = INIT_LINE.search(line)
        if m and to_init is None:
            to_init, guest_init = time.monotonic() - start, float(m.group(1))
        if time.monotonic() > deadline:
            proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    off = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if to_init is None or "VIREO-EXIT 0" not in "".join(tail):
        sys.stderr.write("".join(tail))
        sys.exit(f"linux-boot: {cmd[0]} did not boot to init and power off (status {proc.returncode})")
    return to_init, guest_init, off, usage.ru_maxrss / 1024


results = {}
for name, cmd in machines.items():
    runs = [boot(cmd) for _ in range(args.runs)]
    results[name] = [statistics.median(r[i] for r in runs) for i in range(4)]
    print(f"  {name}: " + "; ".join(f"{r[0]:.2f}/{r[2]:.2f} s" for r in runs), file=sys.stderr)

print(f"Linux boot: Debian's {version} kernel, {args.cpus} vCPU(s), {args.memory} MiB, "
      f"median of {args.runs} runs")
print(f"{'':12} {'to init':>9} {'guest time':>11} {'power-off':>10} {'peak RSS':>10}")
for name, (to_init, guest, off, rss) in results.items():
    print(f"{name:12} {to_init:8.2f}s {guest:10.2f}s {off:9.2f}s {rss:7.0f} MiB")
if "qemu tcg" in results:
    v, q = results["vireo dbt"], results["qemu tcg"]
    print(f"{'vireo/qemu':12} {v[0] / q[0]:8.2f}x {v[1] / q[1]:10.2f}x {v[2] / q[2]:9.2f}x {v[3] / q[3]:9.2f}x")
