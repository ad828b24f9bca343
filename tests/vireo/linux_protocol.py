#!/usr/bin/env python3
"""The Linux/x86 boot protocol without a Linux kernel: linux_stub.S, wrapped
here in a setup header, prints what Vireo's loader handed it (registers,
the zero page, the command line, a sum of the initrd) and the checks
compare that with the protocol. Then hostile headers: each must end with
status 125 and one line naming what was wrong.

usage: linux_protocol.py VIREO LINUX_STUB.bin
"""
import os
import struct
import subprocess
import sys
import tempfile

vireo, stub_path = sys.argv[1:3]
stub = open(stub_path, "rb").read()
tmp = tempfile.mkdtemp(prefix="vireo-linux-proto-")
failures = count = 0

MEMORY = 256 << 20
PREF_ADDRESS = 0x1000000
INIT_SIZE = 0x400000
SETUP_SECTS = 4
HEADER = 0x1F1

# setup_header fields: offset in the image, struct format.
F = {
    "setup_sects": (0x1F1, "B"), "syssize": (0x1F4, "I"), "boot_flag": (0x1FE, "H"), "jump": (0x200, "H"),
    "header": (0x202, "4s"), "version": (0x206, "H"), "type_of_loader": (0x210, "B"), "loadflags": (0x211, "B"),
    "code32_start": (0x214, "I"), "ramdisk_image": (0x218, "I"), "ramdisk_size": (0x21C, "I"),
    "heap_end_ptr": (0x224, "H"), "cmd_line_ptr": (0x228, "I"), "initrd_addr_max": (0x22C, "I"),
    "kernel_alignment": (0x230, "I"), "relocatable_kernel": (0x234, "B"), "xloadflags": (0x236, "H"),
    "cmdline_size": (0x238, "I"), "pref_address": (0x258, "Q"), "init_size": (0x260, "I"),
}


def bzimage(**fields):
    setup = bytearray(512 * (SETUP_SECTS + 1))
    pm = stub + bytes(-len(stub) % 16)
    values = {"setup_sects": SETUP_SECTS, "syssize": len(pm) // 16, "boot_flag": 0xAA55,
              "jump": 0x6AEB,  # header ends at 0x202 + 0x6a = 0x26c
              "header": b"HdrS", "version": 0x20F, "loadflags": 0x01, "initrd_addr_max": 0x7FFFFFFF,
              "kernel_alignment": 0x200000, "relocatable_kernel": 1, "xloadflags": 0x03, "cmdline_size": 2047,
              "pref_address": PREF_ADDRESS, "init_size": INIT_SIZE}
    values.update(fields)
    for name, v in values.items():
        off, fmt = F[name]
        struct.pack_into("<" + fmt, setup, off, v)
    return bytes(setup) + pm


def write(name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def check(name, ok, detail=""):
    global failures, count
    count += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
    failures += not ok


def boot(image, cmdline, initrd=None, memory=MEMORY):
    args = [vireo, "run", "--engine", "dbt", "--memory", f"{memory >> 20}M", "--kernel", write("bzImage", image),
            "--cmdline", cmdline]
    if initrd is not None:
        args += ["--initrd", write("initrd", initrd)]
    p = subprocess.run(args, capture_output=True, timeout=60)
    regs, zp, cmd = {}, bytearray(4096), b""
    for line in p.stdout.decode(errors="replace").splitlines():
        w = line.split()
        if len(w) == 3 and w[0] == "ZP":
            struct.pack_into("<Q", zp, int(w[1], 16), int(w[2], 16))
        elif len(w) == 2 and w[0] == "CMDLINE":
            cmd += struct.pack("<Q", int(w[1], 16))
        elif len(w) == 2:
            regs[w[0]] = int(w[1], 16)
    return p, regs, bytes(zp), cmd.split(b"\0")[0]


def zp_field(zp, name):
    off, fmt = F[name]
    return struct.unpack_from("<" + fmt, zp, off)[0]


# ---- a relocatable kernel with an initrd ----
initrd = os.urandom(300001)
cmdline = "console=ttyS0 root=/dev/vda quiet vireo.run=\"echo hello\""
image = bzimage()
p, r, zp, cmd = boot(image, cmdline, initrd)
check("the stub ran to its end", p.returncode == 0x21 and "DONE" in p.stdout.decode(errors="replace"),
      f"status {p.returncode}, stderr {p.stderr.decode(errors='replace').strip()!r}")
check("entered at pref_address + 0x200", r.get("ENTRY") == PREF_ADDRESS + 0x200, hex(r.get("ENTRY", 0)))
check("RSI points at the zero page", r.get("RSI", 0) and zp[0x202:0x206] == b"HdrS", hex(r.get("RSI", 0)))
check("interrupts off", not r.get("RFLAGS", 0x200) & 0x200, hex(r.get("RFLAGS", 0)))
check("long mode, paging on", r.get("CR0", 0) & 0x80000001 == 0x80000001 and r.get("CR4", 0) & 0x20
      and r.get("EFER", 0) & 0x500 == 0x500, f"CR0 {r.get('CR0', 0):x} CR4 {r.get('CR4', 0):x} EFER {r.get('EFER', 0):x}")
check("CS is __BOOT_CS (0x10), DS and SS __BOOT_DS (0x18)",
      (r.get("CS"), r.get("DS"), r.get("SS")) == (0x10, 0x18, 0x18), f"{r.get('CS')} {r.get('DS')} {r.get('SS')}")
gdt_cs, gdt_ds = r.get("GDT_CS", 0), r.get("GDT_DS", 0)
check("__BOOT_CS: 64-bit code, __BOOT_DS: writable data",
      (gdt_cs >> 40) & 0x9A == 0x9A and (gdt_cs >> 53) & 1 and (gdt_ds >> 40) & 0x92 == 0x92,
      f"{gdt_cs:016x} {gdt_ds:016x}")
hdr_end = 0x202 + image[0x201]
same = [(HEADER, 0x210), (0x212, 0x214), (0x220, 0x224), (0x22C, hdr_end)]  # what the loader leaves alone
check("the setup header is the image's", all(zp[a:b] == image[a:b] for a, b in same),
      [hex(a) for a, b in same if zp[a:b] != image[a:b]])
check("type_of_loader 0xff", zp_field(zp, "type_of_loader") == 0xFF, hex(zp_field(zp, "type_of_loader")))
check("loadflags LOADED_HIGH | CAN_USE_HEAP", zp_field(zp, "loadflags") & 0x81 == 0x81,
      hex(zp_field(zp, "loadflags")))
check("heap_end_ptr set", zp_field(zp, "heap_end_ptr") == 0xDE00, hex(zp_field(zp, "heap_end_ptr")))
check("code32_start is the load address", zp_field(zp, "code32_start") == PREF_ADDRESS,
      hex(zp_field(zp, "code32_start")))
check("alt_mem_k: KiB above 1 MiB", struct.unpack_from("<I", zp, 0x1E0)[0] == (MEMORY >> 10) - 1024,
      struct.unpack_from("<I", zp, 0x1E0)[0])
check("the rest of the zero page starts zeroed", zp[:0x1E0] == bytes(0x1E0) and zp[0x1E4:0x1E8] == bytes(4)
      and zp[0x1E9:HEADER] == bytes(HEADER - 0x1E9) and zp[0x2D0 + 20 * zp[0x1E8]:] == bytes(4096 - 0x2D0 - 20 * zp[0x1E8]),
      "not zero")
check("command line", cmd == cmdline.encode() and zp_field(zp, "cmd_line_ptr") != 0, repr(cmd))
start, size = zp_field(zp, "ramdisk_image"), zp_field(zp, "ramdisk_size")
check("initrd size", size == len(initrd), size)
check("initrd page-aligned, high, above the kernel's footprint",
      start % 4096 == 0 and start >= PREF_ADDRESS + INIT_SIZE and start + size <= MEMORY
      and MEMORY - (start + size) < 4096, hex(start))
check("initrd contents", r.get("INITRD_SUM") == sum(initrd), f"{r.get('INITRD_SUM')} != {sum(initrd)}")
n = zp[0x1E8]
e820 = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
want = [(0, 0x9FC00, 1), (0x9FC00, 0x100000 - 0x9FC00, 2), (0x100000, MEMORY - 0x100000, 1),
        (0xFEC00000, 0x1400000, 2)]
check("e820 table", e820 == want, e820)

# ---- a kernel that cannot move runs at 1 MiB; initrd_addr_max is obeyed ----
p, r, zp, cmd = boot(bzimage(relocatable_kernel=0, initrd_addr_max=0x3FFFFFF), "", initrd)
start = zp_field(zp, "ramdisk_image")
check("not relocatable: entered at 1 MiB + 0x200", r.get("ENTRY") == 0x100200, hex(r.get("ENTRY", 0)))
check("initrd below initrd_addr_max", start + len(initrd) <= 0x4000000 and start % 4096 == 0, hex(start))
check("empty command line", cmd == b"" and p.returncode == 0x21, repr(cmd))
# A header longer than the fields Vireo knows (a newer protocol): copied up
# to where the zero page's own fields begin (0x290), no further.
longer = bytearray(bzimage(jump=0xFFEB))  # ends at 0x301
longer[0x26C:0x301] = bytes(range(1, 0x301 - 0x26C + 1))
p, r, zp, cmd = boot(bytes(longer), "x")
check("a longer header is copied up to 0x290", zp[0x26C:0x290] == longer[0x26C:0x290]
      and zp[0x290:0x2D0] == bytes(0x40) and p.returncode == 0x21, zp[0x26C:0x2D0].hex())
p, r, zp, cmd = boot(image, "x")
check("no initrd: ramdisk fields 0", zp_field(zp, "ramdisk_image") == 0 and zp_field(zp, "ramdisk_size") == 0,
      hex(zp_field(zp, "ramdisk_image")))


# ---- hostile images ----
def expect(name, image, words, extra=(), memory=MEMORY):
    global failures, count
    count += 1
    args = [vireo, "run", "--engine", "dbt", "--memory", f"{memory >> 20}M", "--kernel", write("bad", image)]
    p = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=30)
    err = p.stderr.strip()
    ok = p.returncode == 125 and all(w in err for w in words) and len(err.splitlines()) == 1
    print(f"{'PASS' if ok else 'FAIL'} {name}: status {p.returncode}: {err}")
    if not ok:
        print(f"     wanted status 125 and one line containing {words}")
        failures += 1


expect("protocol 2.05", bzimage(version=0x205), ["protocol 2.05 is too old"])
expect("protocol 2.00", bzimage(version=0x200), ["too old"])
expect("no 64-bit entry point", bzimage(xloadflags=0), ["no 64-bit entry point"])
expect("a zImage", bzimage(loadflags=0), ["zImage"])
expect("wrong boot_flag", bzimage(boot_flag=0x1234), ["boot_flag"])
expect("header truncated by the jump", bytes(bytearray(bzimage())[:0x201]) + b"\x10" + bzimage()[0x202:],
       ["truncated"])
expect("file cut inside the header", bzimage()[:0x210], ["truncated"])
expect("setup sectors past the end", bzimage(setup_sects=200), ["setup code", "does not fit in the file"])
expect("syssize past the end", bzimage(syssize=0x10000000), ["syssize", "does not fit in the file"])
expect("file cut short", bzimage()[: 512 * (SETUP_SECTS + 1) + 1024], ["does not fit in the file"])
expect("syssize 0", bzimage(syssize=0), ["syssize"])
expect("init_size below the kernel", bzimage(init_size=16), ["init_size"])
expect("init_size larger than RAM", bzimage(init_size=0xF0000000), ["give more memory"])
expect("kernel alignment not a power of two", bzimage(kernel_alignment=0x300000), ["kernel_alignment"])
expect("kernel alignment 0", bzimage(kernel_alignment=0), ["kernel_alignment"])
expect("pref_address unaligned", bzimage(pref_address=0x1001000), ["pref_address"])
expect("pref_address below 1 MiB", bzimage(pref_address=0), ["pref_address"])
expect("pref_address in the PCI hole", bzimage(pref_address=0xFFE00000), ["pref_address"])
expect("kernel beyond small RAM", image, ["give more memory"], memory=16 << 20)
expect("initrd larger than RAM", image, ["initrd", "does not fit"],
       ["--initrd", write("big-initrd", bytes(40 << 20))], memory=32 << 20)
expect("initrd below the kernel's end", image, ["initrd", "does not fit"],
       ["--initrd", write("mid-initrd", bytes(8 << 20))], memory=24 << 20)
expect("initrd missing", image, ["cannot open initrd"], ["--initrd", os.path.join(tmp, "absent")])
expect("initrd a directory", image, ["initrd", "not a regular file"], ["--initrd", tmp])
expect("command line over cmdline_size", bzimage(cmdline_size=10), ["command line is 20 bytes", "at most 10"],
       ["--cmdline", "x" * 20])
expect("command line over the boot area", image, ["command line"], ["--cmdline", "y" * 40000])

print(f"DONE {count} checks, {failures} failed")
sys.exit(1 if failures else 0)
