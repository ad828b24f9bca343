#!/usr/bin/env python3
"""Boots a Debian 12 kernel to its initramfs under `vireo run --engine dbt`,
runs tests/linux/check.sh inside it and judges what comes out (guest.py).

usage: boot.py VIREO MKGUEST GUEST_DIR FLAVOUR CPUS

tools/mkguest builds the guest into GUEST_DIR (downloading the packages on
the first run); when apt cannot reach Debian's archive the test is skipped
(status 77). check.sh travels in a second cpio archive appended to the
initramfs, as the kernel allows. It prints how long the boot took.
"""
import sys

from guest import Guest

vireo, mkguest, guest_dir, flavour, cpus = sys.argv[1:6]
guest = Guest(vireo, mkguest, guest_dir, flavour, cpus, f"{flavour} kernel, {cpus} vCPU(s)")
status, lines = guest.boot("check.sh")
passes = guest.judge(status, lines, 10)
print(f"DONE {flavour} kernel, {cpus} vCPU(s): {passes} checks passed, powered off")
