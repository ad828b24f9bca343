"""What the Linux guest tests share: building the guest with tools/mkguest,
adding test scripts to its initramfs, booting it under `vireo run --engine
dbt` with a time limit, and judging what the console shows.

A test passes when the guest powers off (status 0) after printing
"VIREO-EXIT 0", with every check passing (PASS/FAIL lines from the guest's
script) and no BUG:/WARNING: line on the console.
"""
import gzip
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = int(os.environ.get("LINUX_BOOT_TIMEOUT", "400"))
SKIP = 77


def newc(name, data, mode):
    """One cpio newc entry."""
    header = "070701" + "".join(f"{v:08X}" for v in (
        0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    out = header.encode() + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


class Guest:
    def __init__(self, vireo, mkguest, guest_dir, flavour, cpus, label):
        self.vireo, self.flavour, self.cpus, self.label = vireo, flavour, str(cpus), label
        # Every test's guest has xz from the host (mkguest --add: a binary and
        # its shared libraries), which check.sh runs: one initramfs for all.
        p = subprocess.run([mkguest, "--out", guest_dir, "--flavour", flavour, "--add", "/usr/bin/xz"],
                           capture_output=True, text=True)
        if p.returncode == 3:
            self.skip(f"cannot download the Debian packages: {p.stderr.strip().splitlines()[-1]}")
        if p.returncode != 0:
            self.fail(f"tools/mkguest failed (status {p.returncode})", p.stdout + p.stderr)
        self.kernel, self.base_initrd = p.stdout.split()[-2:]

    def skip(self, why):
        print(f"SKIP: {why}")
        sys.exit(SKIP)

    def fail(self, why, output=""):
        if output:
            print(output)
        print(f"FAIL {self.label}: {why}")
        sys.exit(1)

    def initrd(self, scripts):
        """The guest's initramfs with scripts ({name: path}) added under /vireo."""
        tmp = tempfile.mkdtemp(prefix="vireo-linux-")
        path = os.path.join(tmp, "initrd.img")
        extra = newc("vireo", b"", 0o40755)
        for name, src in scripts.items():
            extra += newc("vireo/" + name, open(src, "rb").read(), 0o100755)
        extra += newc("TRAILER!!!", b"", 0)
        with open(path, "wb") as f:
            f.write(open(self.base_initrd, "rb").read())
            f.write(gzip.compress(extra))
        return path

    def boot(self, script, cmdline_extra="", vireo_args=(), prefix=(), memory="512M", console="ttyS0", replies=None):
        """Boots with /vireo/SCRIPT as the guest's script; returns the status
        and the console lines, having printed them and the boot's times.
        replies ({text: bytes}) are typed on the console's input when a
        line with that text appears."""
        initrd = self.initrd({script: os.path.join(HERE, script), "checks.sh": os.path.join(HERE, "checks.sh")})
        cmdline = f"console={console} vireo.script=/vireo/{script} vireo.test.cpus={self.cpus} {cmdline_extra}"
        cmdline = cmdline.strip()
        cmd = list(prefix) + [self.vireo, "run", "--engine", "dbt", "--cpus", self.cpus, "--memory", memory,
                              "--kernel", self.kernel, "--initrd", initrd, "--cmdline", cmdline] + list(vireo_args)
        print("running:", " ".join(cmd), flush=True)
        start = time.monotonic()
        replies = dict(replies or {})
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if replies else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
            for text in [t for t in replies if t in line]:
                proc.stdin.write(replies.pop(text))
                proc.stdin.flush()
        status = proc.wait()
        self.timed_out = not watchdog.is_alive()
        watchdog.cancel()
        marks["power-off"] = time.monotonic() - start
        print("\n".join(lines))
        print("INFO times from process start: " + ", ".join(f"{k} {v:.1f} s" for k, v in marks.items()))
        return status, lines

    def judge(self, status, lines, min_passes, banner=True):
        """Fails unless the guest's script passed at least min_passes checks,
        none failed, and the VM powered off cleanly; returns the pass count.
        banner: the console (the serial port) shows the kernel's banner first."""
        if self.timed_out:
            self.fail(f"no power-off within {LIMIT} s")
        if banner and (not lines or "Linux version" not in lines[0]):
            self.fail("the console's first line is not the kernel's banner (console=ttyS0 without earlyprintk)")
        exits = [m.group(1) for m in (re.match(r"VIREO-EXIT (\d+)$", l) for l in lines) if m]
        if exits != ["0"]:
            self.fail(f"the guest's script reported {exits or 'nothing'} (want one VIREO-EXIT 0)")
        bad = [l for l in lines if re.search(r"BUG:|WARNING:|Call Trace|Kernel panic", l)]
        if bad:
            self.fail(f"the console shows {bad[0]!r}")
        passes = [l for l in lines if l.startswith("PASS ")]
        if len(passes) < min_passes or any(l.startswith("FAIL ") for l in lines):
            self.fail(f"{len(passes)} checks passed inside the guest")
        if status != 0:
            self.fail(f"vireo exited with status {status}, not 0 (ACPI power-off)")
        return len(passes)
