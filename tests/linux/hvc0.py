#!/usr/bin/env python3
"""The virtio console as Linux's console: a Debian 12 guest (guest.py) booted
with console=hvc0 and --console virtio. The guest's script (hvc0.sh) checks
that hvc0 is its console and terminal, prints READY, and echoes the line
this test then types on Vireo's standard input; the test checks the echo.

usage: hvc0.py VIREO MKGUEST GUEST_DIR FLAVOUR CPUS
"""
import sys

from guest import Guest

vireo, mkguest, guest_dir, flavour, cpus = sys.argv[1:6]
guest = Guest(vireo, mkguest, guest_dir, flavour, cpus, f"hvc0 console, {flavour} kernel, {cpus} vCPU(s)")
status, lines = guest.boot("hvc0.sh", vireo_args=["--console", "virtio"], console="hvc0",
                           replies={"READY": b"hello through hvc0\n"})
# hvc0 appears with virtio_console, after the kernel's first messages.
passes = guest.judge(status, lines, 3, banner=False)
if "ECHO <hello through hvc0>" not in lines:
    guest.fail("the guest's echo of the typed line is not on the console")
print(f"DONE hvc0 console, {flavour} kernel, {cpus} vCPU(s): {passes} checks passed, the typed line echoed")
