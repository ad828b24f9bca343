#!/usr/bin/env python3
"""qcow2 images against QEMU: images made by qemu-img and qemu-io must read
through Vireo as qemu-img convert reads them, images Vireo writes must pass
qemu-img check and hold what was written, backing images must stay
untouched, and broken images must give an error, never a crash.

usage: qcow2.py BLOCK_TOOL read|write|backing|hostile
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

tool, part = os.path.abspath(sys.argv[1]), sys.argv[2]
failures = 0
checks = 0

if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
    print("SKIP: qemu-img and qemu-io are not installed (scripts/install-deps.sh installs qemu-utils)")
    sys.exit(77)

work = tempfile.mkdtemp(prefix="vireo-qcow2-")


def path(name):
    return os.path.join(work, name)


def run(*cmd, ok=(0,)):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode not in ok:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def check(name, cond, detail=""):
    global failures, checks
    checks += 1
    if cond:
        print(f"PASS {name}")
    else:
        failures += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}")


def create(name, size, opts="", backing=None, backing_fmt=None):
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if opts:
        cmd += ["-o", opts]
    if backing:
        cmd += ["-b", backing, "-F", backing_fmt]
    run(*cmd, path(name), size)
    return path(name)


def qemu_io(image, *commands):
    args = ["qemu-io", "-f", "qcow2"]
    for c in commands:
        args += ["-c", c]
    run(*args, image)


def to_raw(image, out):
    run("qemu-img", "convert", "-O", "raw", image, out)
    return out


def same_files(a, b):
    return run("cmp", "-s", a, b, ok=(0, 1)).returncode == 0


def image_check(image):
    """qemu-img check: clean means no errors and no leaks (status 0)."""
    p = run("qemu-img", "check", image, ok=(0, 1, 2, 3))
    return p.returncode == 0, p.stdout.strip().splitlines()[0] if p.stdout.strip() else p.stderr.strip()


def sha(name):
    with open(name, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_matches(name, image):
    """block-tool read of the image equals qemu-img convert's raw output."""
    ours = path("ours.raw")
    p = run(tool, "read", image, ours, ok=(0, 1))
    if p.returncode:
        check(name, False, p.stderr.strip())
        return
    check(name, same_files(ours, to_raw(image, path("theirs.raw"))), "contents differ from qemu-img convert")


def write_checks(name, seed, count, *images):
    """block-tool write on images (each with its model made by qemu-img
    convert), then qemu-img check and convert against the models."""
    args = []
    for image in images:
        args += [image, to_raw(image, image + ".model")]
    p = run(tool, "write", seed, count, *args, ok=(0, 1))
    if p.returncode:
        check(name, False, (p.stdout + p.stderr).strip())
        return False
    good = True
    for image in images:
        clean, line = image_check(image)
        check(f"{name}: qemu-img check {os.path.basename(image)}", clean, line)
        check(f"{name}: qemu-img convert of {os.path.basename(image)} holds what was written",
              same_files(to_raw(image, path("after.raw")), image + ".model"))
        good = good and clean
    return good


def patterns(image, cluster):
    qemu_io(image, "write -P 0xab 0 64k", f"write -P 0x12 {3 * cluster + 100} {5 * cluster}",
            "write -P 0xcd 5M 1M", "write -z 5M 64k", "write -P 0x77 9000k 4k", "discard 9000k 4k",
            "write -P 0x31 15M 1M")


def part_read():
    for compat in ("1.1", "0.10"):
        for cluster in (512, 4096, 65536, 2 << 20):
            image = create(f"r-{compat}-{cluster}.qcow2", "20M", f"compat={compat},cluster_size={cluster}")
            patterns(image, cluster)
            read_matches(f"read compat={compat} cluster_size={cluster}", image)
    for bits in (2, 8, 64):
        image = create(f"r-rb{bits}.qcow2", "20M", f"refcount_bits={bits}")
        patterns(image, 65536)
        read_matches(f"read refcount_bits={bits}", image)
    # compressed clusters (deflate), from a raw image with data and holes
    raw = path("data.raw")
    with open(raw, "wb") as f:
        f.truncate(12 << 20)
        for i in range(40):
            f.seek(i * 300 * 1024 + 77)
            f.write(os.urandom(20000) + bytes([i]) * 50000)
    for cluster in (512, 65536, 2 << 20):
        image = path(f"compressed-{cluster}.qcow2")
        run("qemu-img", "convert", "-c", "-O", "qcow2", "-o", f"cluster_size={cluster}", raw, image)
        read_matches(f"read compressed clusters, cluster_size={cluster}", image)
    image = create("prealloc.qcow2", "8M", "preallocation=metadata")
    qemu_io(image, "write -P 0x42 1M 100k")
    read_matches("read preallocation=metadata", image)


def part_write():
    seed = 1
    for compat in ("1.1", "0.10"):
        for cluster in (512, 4096, 65536, 2 << 20):
            image = create(f"w-{compat}-{cluster}.qcow2", "24M", f"compat={compat},cluster_size={cluster}")
            patterns(image, cluster)
            write_checks(f"write compat={compat} cluster_size={cluster}", seed, 300, image)
            seed += 1
    for bits in (1, 2, 32, 64):
        image = create(f"w-rb{bits}.qcow2", "16M", f"refcount_bits={bits},cluster_size=1k")
        write_checks(f"write refcount_bits={bits}", seed, 200, image)
        seed += 1
    # a large sparse disk with small clusters: many new L2 tables and refcount
    # blocks, and the refcount table moves several times
    image = create("w-sparse.qcow2", "1G", "cluster_size=512")
    write_checks("write sparse 1 GiB disk, 512-byte clusters", seed, 400, image)
    image = create("w-prealloc.qcow2", "8M", "preallocation=metadata")
    write_checks("write preallocation=metadata", seed + 1, 100, image)
    # overwriting compressed clusters frees them
    image = path("w-compressed.qcow2")
    run("qemu-img", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k",
        to_raw(create("src.qcow2", "8M"), path("src.raw")), image)
    qemu_io(image, "write -c -P 0x99 0 1M")
    write_checks("write over compressed clusters", seed + 2, 100, image)
    # a process that dies between flushes leaves a consistent image holding
    # everything written before the last flush (at worst leaked clusters)
    for cluster in (512, 65536):
        image = create(f"crash-{cluster}.qcow2", "16M", f"cluster_size={cluster}")
        model = to_raw(image, image + ".model")
        run(tool, "crash", seed + 4, 40, image, model)
        p = run("qemu-img", "check", image, ok=(0, 1, 2, 3))
        check(f"crash before flush, cluster_size={cluster}: qemu-img check finds no errors", p.returncode in (0, 3),
              p.stdout + p.stderr)
        with open(to_raw(image, path("after.raw")), "rb") as a, open(model, "rb") as m:
            check(f"crash before flush, cluster_size={cluster}: the flushed writes survive",
                  a.read(8 << 20) == m.read(8 << 20))
    # the image reopens and takes more writes
    write_checks("write again after reopening", seed + 3, 100, path("w-1.1-65536.qcow2"))


def part_backing():
    base = path("base.raw")
    with open(base, "wb") as f:
        f.write(os.urandom(20 << 20))
    base_sum = sha(base)
    # raw base, overlay larger than the base (zeros past its end)
    top = create("over-raw.qcow2", "24M", "cluster_size=4096", "base.raw", "raw")
    qemu_io(top, "write -P 0x11 1M 8k")
    read_matches("read overlay over raw base", top)
    write_checks("write overlay over raw base", 1, 300, top)
    check("raw base unchanged", sha(base) == base_sum)
    check("qemu-img compare overlay with its model",
          run("qemu-img", "compare", "-q", "-F", "raw", top, top + ".model", ok=(0, 1)).returncode == 0)
    # qcow2 base with compressed clusters, a chain of three
    run("qemu-img", "convert", "-c", "-O", "qcow2", base, path("base.qcow2"))
    mid = create("mid.qcow2", "20M", "cluster_size=65536", "base.qcow2", "qcow2")
    qemu_io(mid, "write -P 0x22 2M 300k", "write -z 4M 1M")
    base_qcow2_sum = sha(path("base.qcow2"))
    top = create("top.qcow2", "20M", "cluster_size=512", "mid.qcow2", "qcow2")
    read_matches("read chain raw -> qcow2 (compressed) -> qcow2", top)
    mid_sum = sha(mid)
    write_checks("write top of a chain of three", 2, 300, top)
    check("qcow2 base and middle image unchanged",
          sha(path("base.qcow2")) == base_qcow2_sum and sha(mid) == mid_sum)
    # two overlays of one base open at once (the base shared, read-only)
    a = create("a.qcow2", "20M", "", "base.qcow2", "qcow2")
    b = create("b.qcow2", "20M", "cluster_size=16384", "base.qcow2", "qcow2")
    write_checks("two overlays of one base written at once", 3, 200, a, b)
    check("shared base unchanged", sha(path("base.qcow2")) == base_qcow2_sum)
    # the backing name is relative to the overlay's directory, not ours
    os.makedirs(path("sub"))
    shutil.copy(base, path("sub/base.raw"))
    create("sub/rel.qcow2", "20M", "", "base.raw", "raw")
    os.chdir("/")
    read_matches("relative backing path resolved from the overlay's directory", path("sub/rel.qcow2"))
    # an old image without the backing format extension: the base is probed
    old = path("noformat.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", old, "20M")
    set_backing_name(old, "base.qcow2")
    read_matches("backing format probed when the header does not name it", old)


def set_backing_name(image, name):
    """Points the header at a backing file name placed after the header."""
    with open(image, "r+b") as f:
        data = name.encode()
        f.seek(8)
        f.write(struct.pack(">QI", 512, len(data)))
        f.seek(512)
        f.write(data)


def patch(image, offset, fmt, *values):
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def header(image):
    with open(image, "rb") as f:
        h = f.read(104)
    return {
        "cluster_bits": struct.unpack(">I", h[20:24])[0],
        "l1_offset": struct.unpack(">Q", h[40:48])[0],
        "reftable_offset": struct.unpack(">Q", h[48:56])[0],
        "header_length": struct.unpack(">I", h[100:104])[0],
    }


def expect(name, image, mode, outcome, words=""):
    """outcome: 'refused' (no open, message with words), 'eio' (opens,
    requests fail with a corrupt-image message), 'ok' (opens, works)."""
    p = subprocess.run([tool, "open", image, mode], capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip()
    if p.returncode not in (0, 3):
        check(name, False, f"exit status {p.returncode} (a crash?): {out[-2000:]}")
    elif outcome == "refused":
        check(name, p.returncode == 3 and words in out, out)
        print("   ", out[-300:])
    elif outcome == "eio":
        check(name, p.returncode == 0 and " 0 failed" not in out and "corrupt" in out, out)
        print("   ", out[-300:])
    else:
        check(name, p.returncode == 0 and " 0 failed" in out, out)


def fresh(name, opts="cluster_size=4096"):
    image = create(name, "16M", opts)
    qemu_io(image, "write -P 0x55 0 2M")
    return image


def part_hostile():
    image = path("truncated.qcow2")
    with open(fresh("t.qcow2"), "rb") as f:
        data = f.read(60)
    with open(image, "wb") as f:
        f.write(data)
    expect("truncated header", image, "ro", "refused", "truncated header")

    image = fresh("version.qcow2")
    patch(image, 4, ">I", 4)
    expect("version 4", image, "ro", "refused", "version 4")

    image = fresh("cbits.qcow2")
    patch(image, 20, ">I", 30)
    expect("cluster_bits 30", image, "ro", "refused", "cluster_bits 30")

    image = fresh("l1huge.qcow2")
    patch(image, 36, ">I", 0x40000000)
    expect("huge L1 size", image, "ro", "refused", "too large")

    image = fresh("l1small.qcow2")
    patch(image, 36, ">I", 0)
    expect("L1 too small for the disk", image, "ro", "refused", "too small")

    image = fresh("l1out.qcow2")
    patch(image, 40, ">Q", 1 << 40)
    expect("L1 offset outside the file", image, "ro", "refused", "L1 table")

    image = fresh("l1unaligned.qcow2")
    patch(image, 40, ">Q", header(image)["l1_offset"] + 8)
    expect("L1 offset unaligned", image, "ro", "refused", "L1 table")

    image = fresh("reftout.qcow2")
    patch(image, 48, ">Q", 1 << 45)
    expect("refcount table outside the file", image, "rw", "refused", "refcount table")

    image = fresh("reftzero.qcow2")
    patch(image, 56, ">I", 0)
    expect("refcount table of no clusters", image, "rw", "refused", "refcount table")

    image = fresh("l2out.qcow2")
    patch(image, header(image)["l1_offset"], ">Q", (1 << 63) | (1 << 44))
    expect("L2 table offset outside the file", image, "ro", "eio")

    image = fresh("l2unaligned.qcow2")
    patch(image, header(image)["l1_offset"], ">Q", (1 << 63) | 0x10200)
    expect("L2 table offset unaligned", image, "rw", "eio")

    image = fresh("l1reserved.qcow2")
    patch(image, header(image)["l1_offset"], ">Q", (1 << 63) | (1 << 60) | 0x10000)
    expect("L1 entry with reserved bits", image, "ro", "eio")

    image = fresh("l2self.qcow2")
    l1 = header(image)["l1_offset"]
    patch(image, l1, ">Q", (1 << 63) | l1)  # the L1 table as an L2 table: a loop
    expect("L2 table pointing back at the L1 table", image, "ro", "ok")

    image = fresh("dataout.qcow2")
    with open(image, "rb") as f:
        f.seek(header(image)["l1_offset"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    patch(image, l2 + 8, ">Q", (1 << 63) | (1 << 50))
    expect("data cluster outside the file", image, "ro", "eio")

    image = fresh("v2zero.qcow2", "compat=0.10,cluster_size=4096")
    with open(image, "rb") as f:
        f.seek(header(image)["l1_offset"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    patch(image, l2 + 16, ">Q", 1)  # the zero flag does not exist in version 2
    expect("zero flag in a version 2 image", image, "ro", "eio")

    image = fresh("zeroout.qcow2")
    with open(image, "rb") as f:
        f.seek(header(image)["l1_offset"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    patch(image, l2 + 16, ">Q", (1 << 63) | (1 << 45) | 1)
    expect("zero cluster preallocated outside the file", image, "rw", "eio")

    image = fresh("refbad.qcow2")
    patch(image, header(image)["reftable_offset"], ">Q", 0x1234)
    expect("refcount block offset unaligned (written)", image, "rw", "eio")
    expect("refcount block offset unaligned (read-only: unused)", image, "ro", "ok")

    image = fresh("refout.qcow2")
    patch(image, header(image)["reftable_offset"], ">Q", 1 << 40)
    expect("refcount block outside the file (written)", image, "rw", "eio")

    image = fresh("incompat.qcow2")
    patch(image, 72, ">Q", 1 << 5)
    expect("unknown incompatible feature bit", image, "ro", "refused", "unknown incompatible features: bit 5")

    image = fresh("incompat-named.qcow2")
    # a feature name table naming bit 9, then the end of the extensions
    patch(image, header(image)["header_length"], ">II BB46s II", 0x6803F857, 48, 0, 9, b"teleportation", 0, 0)
    patch(image, 72, ">Q", 1 << 9)
    expect("unknown incompatible feature named by the image", image, "ro", "refused", "bit 9 (teleportation)")

    image = fresh("extl2.qcow2", "extended_l2=on,cluster_size=65536")
    expect("extended L2 entries", image, "ro", "refused", "extended L2")

    image = fresh("corrupt.qcow2")
    patch(image, 72, ">Q", 2)
    expect("corrupt bit, writable", image, "rw", "refused", "corrupt")
    expect("corrupt bit, read-only", image, "ro", "ok")

    image = fresh("dirty.qcow2", "lazy_refcounts=on")
    patch(image, 72, ">Q", 1)
    expect("dirty bit, writable", image, "rw", "refused", "dirty")
    expect("dirty bit, read-only", image, "ro", "ok")

    image = fresh("crypt.qcow2")
    patch(image, 32, ">I", 1)
    expect("encrypted image", image, "ro", "refused", "encrypted")

    image = fresh("ext.qcow2")
    patch(image, header(image)["header_length"], ">II", 0x12345678, 1 << 30)
    expect("header extension longer than the cluster", image, "ro", "refused", "header extension")

    image = fresh("autoclear.qcow2")
    patch(image, 88, ">Q", 1 << 40)
    expect("unknown autoclear bit (cleared on writable open)", image, "rw", "ok")
    clean, line = image_check(image)
    check("image with cleared autoclear bit passes qemu-img check", clean, line)

    image = create("loop.qcow2", "16M", "compat=0.10")
    set_backing_name(image, "loop.qcow2")
    expect("backing file loop (read-only)", image, "ro", "refused", "loop")
    expect("backing file loop (writable)", image, "rw", "refused", "loop")

    create("chain0.qcow2", "1M")
    for i in range(1, 20):
        create(f"chain{i}.qcow2", "1M", "", f"chain{i - 1}.qcow2", "qcow2")
    expect("backing chain of 20 images", path("chain19.qcow2"), "ro", "refused", "deeper than")

    image = path("badzip.qcow2")
    raw = path("z.raw")
    with open(raw, "wb") as f:
        f.write(os.urandom(1 << 20))
    run("qemu-img", "convert", "-c", "-O", "qcow2", raw, image)
    with open(image, "rb") as f:
        f.seek(header(image)["l1_offset"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    # random data does not compress: make the first cluster compressed garbage
    patch(image, l2, ">Q", (1 << 62) | (8 << 54) | 0x60000)
    expect("compressed cluster that does not inflate", image, "ro", "eio")

    image = path("missing.qcow2")
    create("missing.qcow2", "1M", "compat=0.10")
    set_backing_name(image, "no-such-base.img")
    expect("missing backing file", image, "ro", "refused", "no-such-base.img")


parts = {"read": part_read, "write": part_write, "backing": part_backing, "hostile": part_hostile}
try:
    parts[part]()
except RuntimeError as e:
    check(f"{part}: setup", False, str(e))
finally:
    shutil.rmtree(work, ignore_errors=True)
print(f"DONE {checks} checks, {failures} failed")
sys.exit(1 if failures else 0)
