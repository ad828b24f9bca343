#!/usr/bin/env python3
"""Hostile input to `vireo run`: malformed and oversized images, and command
lines it does not support. Each must end with status 125 and one line naming
what was wrong, never a crash, a hang or silence.

usage: bad_input.py VIREO GOOD_GUEST.elf
"""
import os
import struct
import subprocess
import sys
import tempfile

vireo, good = sys.argv[1], sys.argv[2]
image = open(good, "rb").read()
tmp = tempfile.mkdtemp(prefix="vireo-bad-")
failures = 0
count = 0


def write(name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def expect(name, args, words, status=125):
    """Runs vireo with args; wants the status and every word on stderr."""
    global failures, count
    count += 1
    try:
        p = subprocess.run([vireo] + args, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        print(f"FAIL {name}: vireo hung")
        failures += 1
        return
    err = p.stderr.strip()
    lines = err.splitlines()
    ok = p.returncode == status and all(w in err for w in words) and len(lines) == 1
    print(f"{'PASS' if ok else 'FAIL'} {name}: status {p.returncode}: {err}")
    if not ok:
        print(f"     wanted status {status} and one line containing {words}")
        failures += 1


def patched(offset, fmt, *values):
    data = bytearray(image)
    struct.pack_into(fmt, data, offset, *values)
    return bytes(data)


def run(kernel, *extra):
    return ["run", "--engine", "dbt", "--kernel", kernel] + list(extra)


# The test guests are ELF32 multiboot images: find their header and phdrs.
assert image[:4] == b"\x7fELF" and image[4] == 1, "expects an ELF32 guest"
e_phoff, = struct.unpack_from("<I", image, 28)
e_phnum, = struct.unpack_from("<H", image, 44)
mb = image.find(struct.pack("<I", 0x1BADB002))
assert 0 <= mb < 8192

expect("missing file", run(os.path.join(tmp, "absent")), ["cannot open", "No such file"])
expect("directory", run(tmp), ["not a regular file"])
expect("empty file", run(write("empty", b"")), ["not a multiboot, Linux bzImage or ELF64 image"])
expect("random bytes", run(write("random", os.urandom(4096))), ["not a multiboot, Linux bzImage or ELF64 image"])
expect("truncated ELF header", run(write("trunc", image[:40])), ["truncated"])
p_offset, p_filesz = struct.unpack_from("<I", image, e_phoff + 4)[0], struct.unpack_from("<I", image, e_phoff + 16)[0]
expect("truncated segments", run(write("trunc2", image[: p_offset + p_filesz // 2])), ["outside the file"])
expect("program headers outside the file", run(write("phoff", patched(28, "<I", len(image) + 64))),
       ["program headers"])
expect("absurd program header count", run(write("phnum", patched(44, "<H", 0xFFFF))), ["program headers"])
# First PT_LOAD: p_paddr at +12, p_memsz at +20 in an Elf32_Phdr.
ph = e_phoff
expect("segment beyond guest RAM", run(write("paddr", patched(ph + 12, "<I", 0xF0000000))),
       ["does not fit in guest RAM"])
expect("segment memsz overflow", run(write("memsz", patched(ph + 20, "<I", 0xFFFFFFF0))),
       ["does not fit in guest RAM"])
expect("segment over the boot area", run(write("low", patched(ph + 12, "<I", 0x2000))),
       ["does not fit in guest RAM"])
expect("image larger than RAM", run(write("huge", image + bytes(3 << 20)), "--memory", "2M"),
       ["does not fit in guest RAM"])
bad_sum = patched(mb + 8, "<I", 0)
expect("multiboot checksum wrong, ELF32 without it", run(write("cksum", bad_sum)),
       ["multiboot header"])
video = patched(mb + 4, "<I", 0x7)
video = bytearray(video)
struct.pack_into("<I", video, mb + 8, (-(0x1BADB002 + 0x7)) & 0xFFFFFFFF)
expect("multiboot requires a video mode", run(write("video", bytes(video))), ["video mode"])
addr = bytearray(image)
struct.pack_into("<IIIIIIII", addr, mb, 0x1BADB002, 0x10000, (-(0x1BADB002 + 0x10000)) & 0xFFFFFFFF,
                 0x100000, 0x200000, 0x100000, 0, 0x100010)
expect("multiboot address fields inconsistent", run(write("addr", bytes(addr))), ["address fields"])
expect("initrd module missing", run(good, "--initrd", os.path.join(tmp, "nomod")), ["cannot open"])
expect("command line too long", run(good, "--cmdline", "x" * 40000), ["command line"])

expect("unknown option", ["run", "--kernel", good, "-usb"], ["unsupported option '-usb'"])
expect("unknown device", ["run", "--kernel", good, "-device", "e1000"], ["unsupported device 'e1000'"])
expect("unknown device property", ["run", "--kernel", good, "-device", "virtio-rng-pci,rng=rng0"],
       ["virtio-rng-pci", "no property 'rng'"])
expect("bad MSI-X vector count", ["run", "--kernel", good, "-device", "virtio-rng-pci,vectors=65"], ["vectors='65'"])
expect("legacy virtio", ["run", "--kernel", good, "-device", "virtio-rng-pci,disable-legacy=off"], ["modern only"])
expect("virtconsole without its bus", ["run", "--kernel", good, "-device", "virtconsole"],
       ["virtconsole needs a -device virtio-serial-pci"])
expect("two virtconsoles", ["run", "--kernel", good, "--console", "virtio", "-device", "virtconsole"],
       ["one port"])
expect("virtconsole chardev", ["run", "--kernel", good, "-device", "virtio-serial-pci", "-device",
                               "virtconsole,chardev=c0"], ["virtconsole", "chardev= is not supported"])
# Disks: bad -drive, -device virtio-blk-pci and --disk specs.
disk = write("disk.img", bytes(1 << 20))
absent = os.path.join(tmp, "absent.img")
expect("disk image missing", ["run", "--kernel", good, "--disk", absent], ["cannot open disk image", "No such file"])
expect("disk image empty", ["run", "--kernel", good, "--disk", write("empty.img", b"")], ["empty"])
expect("disk image a directory", ["run", "--kernel", good, "-drive", f"file={tmp},format=raw"],
       ["Is a directory"])
expect("drive without a file", ["run", "--kernel", good, "-drive", "if=virtio,format=raw"], ["needs an image"])
expect("unknown image format", ["run", "--kernel", good, "-drive", f"file={disk},format=vmdk"],
       ["unknown image format 'vmdk'"])
expect("unknown drive property", ["run", "--kernel", good, "-drive", f"file={disk},cache=none"],
       ["unsupported property 'cache'"])
expect("unknown drive interface", ["run", "--kernel", good, "-drive", f"file={disk},if=ide"], ["'if=ide'"])
expect("bad readonly value", ["run", "--kernel", good, "-drive", f"file={disk},readonly=maybe"],
       ["unsupported property 'readonly'"])
expect("unknown --disk property", ["run", "--kernel", good, "--disk", f"{disk},cache"], ["unsupported property 'cache'"])
expect("virtio-blk without a drive", ["run", "--kernel", good, "-device", "virtio-blk-pci"], ["needs drive=ID"])
expect("drive id not found", ["run", "--kernel", good, "-drive", f"file={disk},if=none,id=d0", "-device",
                              "virtio-blk-pci,drive=d1"], ["drive 'd1' not found"])
expect("drive used twice", ["run", "--kernel", good, "-drive", f"file={disk},if=none,id=d0", "-device",
                            "virtio-blk-pci,drive=d0", "-device", "virtio-blk-pci,drive=d0"], ["'d0' is already used"])
expect("drive id given twice", ["run", "--kernel", good, "-drive", f"file={disk},if=none,id=d0", "-drive",
                                f"file={disk},if=none,id=d0"], ["id 'd0' is used by two drives"])
expect("one image, two writable drives", ["run", "--kernel", good, "--disk", disk, "--disk", disk],
       ["not both are read-only"])
expect("unknown virtio-blk property", ["run", "--kernel", good, "-drive", f"file={disk},if=none,id=d0", "-device",
                                       "virtio-blk-pci,drive=d0,logical_block_size=4096"],
       ["no property 'logical_block_size'"])
expect("bad num-queues", ["run", "--kernel", good, "-drive", f"file={disk},if=none,id=d0", "-device",
                          "virtio-blk-pci,drive=d0,num-queues=0"], ["num-queues='0'"])
expect("serial too long", ["run", "--kernel", good, "-drive", f"file={disk},if=none,id=d0", "-device",
                           "virtio-blk-pci,drive=d0,serial=" + "x" * 21], ["longer than 20"])
expect("unknown console", ["run", "--kernel", good, "--console", "vga"], ["unknown console 'vga'"])

# Networks: -netdev, -device virtio-net-pci, -nic, --net.
def net(*extra):
    return ["run", "--kernel", good] + list(extra)


NIC = ["-device", "virtio-net-pci,netdev=n0"]
expect("unknown network back end", net("-netdev", "bridge,id=n0", *NIC), ["unsupported network back end 'bridge'"])
expect("netdev without id", net("-netdev", "user"), ["needs an id"])
expect("unknown netdev property", net("-netdev", "user,id=n0,smb=/tmp", *NIC), ["no property 'smb'"])
expect("two netdevs, one id", net("-netdev", "user,id=n0", "-netdev", "user,id=n0", *NIC), ["id 'n0'"])
expect("netdev id not found", net("-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n1"),
       ["no -netdev with id 'n1'"])
expect("NIC without netdev", net("-device", "virtio-net-pci"), ["needs netdev=ID"])
expect("netdev used twice", net("-netdev", "user,id=n0", *NIC, *NIC), ["'n0' is already another NIC's"])
expect("bad MAC", net("-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=01:00:5e:00:00:01"),
       ["bad mac"])
expect("bad mq", net("-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mq=2"), ["mq='2'"])
expect("bad hostfwd", net("-netdev", "user,id=n0,hostfwd=tcp::99999-:22", *NIC), ["bad hostfwd"])
expect("tap script", net("-netdev", "tap,id=n0,ifname=tap0,script=/etc/qemu-ifup", *NIC), ["runs no scripts"])
expect("tap queues", net("-netdev", "tap,id=n0,ifname=tap0,queues=0", *NIC), ["queues='0'"])
expect("tap name too long", net("-netdev", "tap,id=n0,ifname=" + "t" * 20, *NIC), ["bad ifname"])
expect("unknown --net", net("--net", "vde"), ["unknown network 'vde'"])
expect("-nic model", net("-nic", "user,model=e1000"), ["unsupported model 'e1000'"])
if os.geteuid() == 0:
    expect("tap on a device that is not a tap", net("-netdev", "tap,id=n0,ifname=lo,script=no", *NIC),
           ["'lo' is not a tap device"])
# A tap device that does not exist, for a user who may not create one.
unprivileged = ["unshare", "--user"] if os.geteuid() == 0 else []
if not unprivileged or subprocess.run(unprivileged + ["true"], capture_output=True).returncode == 0:
    count += 1
    p = subprocess.run(unprivileged + [vireo] + net("-netdev", "tap,id=n0,ifname=vireo-absent0,script=no", *NIC),
                       capture_output=True, text=True, timeout=30)
    err = p.stderr.strip()
    ok = p.returncode == 125 and "no tap device 'vireo-absent0'" in err and len(err.splitlines()) == 1
    print(f"{'PASS' if ok else 'FAIL'} missing tap device: status {p.returncode}: {err}")
    failures += not ok
expect("bad memory size", ["run", "--kernel", good, "-m", "lots"], ["bad memory size 'lots'"])
expect("zero vCPUs", ["run", "--kernel", good, "-smp", "0"], ["bad vCPU count '0'"])
expect("too many vCPUs", ["run", "--kernel", good, "-smp", "65"], ["65 vCPUs"])
expect("unknown engine", ["run", "--kernel", good, "--engine", "bochs"], ["unknown accelerator 'bochs'"])
expect("unknown machine", ["run", "--kernel", good, "-machine", "microvm"], ["unsupported machine type"])
expect("missing option value", ["run", "--kernel"], ["needs a value"])
expect("no kernel", ["run"], ["no kernel given"])
expect("unknown command", ["frobnicate"], ["unknown command 'frobnicate'"])

print(f"DONE {count} checks, {failures} failed")
sys.exit(1 if failures else 0)
