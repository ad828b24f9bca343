#!/usr/bin/env python3
"""vireo user against the host: each program runs natively and under
`vireo user` with the same arguments and stdin; stdout and the exit status
(or the signal that killed it) must be the same.

usage: programs.py VIREO [TEST_PROGRAM...]
  TEST_PROGRAM: the programs of progs/ (user-signals, user-faults...), built
  by meson. VIREO_USER_ONLY=WORD,... runs only the cases whose names contain
  one of the words. A malformed ELF must fail with status 126 as execve would.
"""
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile

vireo = os.path.abspath(sys.argv[1])
progs = {os.path.basename(p): os.path.abspath(p) for p in sys.argv[2:]}
only = [w for w in os.environ.get("VIREO_USER_ONLY", "").split(",") if w]
tmp = tempfile.mkdtemp(prefix="vireo-user-")
lines = "".join(f"{(i * 7919) % 1000} line {i}\n" for i in range(2000)).encode()
text = b"the quick brown fox\njumps over\nthe lazy dog\n" * 50
with open(os.path.join(tmp, "a.txt"), "wb") as f:
    f.write(lines)
with open(os.path.join(tmp, "b.txt"), "wb") as f:
    f.write(text)
A, B = os.path.join(tmp, "a.txt"), os.path.join(tmp, "b.txt")

BB = "/bin/busybox"
# name, argv, stdin
cases = []
busybox = [
    ("echo", ["echo", "hello", "world"], b""),
    ("cat", ["cat", A], b""),
    ("wc", ["wc", A, B], b""),
    ("sort", ["sort", "-n"], lines),
    ("uniq", ["uniq", "-c"], text),
    ("head", ["head", "-n", "5", A], b""),
    ("tail", ["tail", "-n", "5", A], b""),
    ("tr", ["tr", "a-z", "A-Z"], text),
    ("cut", ["cut", "-d", " ", "-f", "2,3"], lines),
    ("sed", ["sed", "-e", "s/o/0/g; /fox/d"], text),
    ("awk", ["awk", "{ s += $1 } END { print s, NR, s / NR }"], lines),
    ("grep", ["grep", "-c", "lazy"], text),
    ("expr", ["expr", "12345", "*", "6789"], b""),
    ("seq", ["seq", "1", "3", "100"], b""),
    ("printf", ["printf", "%05d %x %s\\n", "42", "255", "str"], b""),
    ("basename", ["basename", "/usr/lib/x.so", ".so"], b""),
    ("dirname", ["dirname", "/usr/lib/x.so"], b""),
    ("md5sum", ["md5sum", A], b""),
    ("sha1sum", ["sha1sum", A], b""),
    ("sha256sum", ["sha256sum", A], b""),
    ("sha512sum", ["sha512sum", A], b""),
    ("base64", ["base64"], text),
    ("od", ["od", "-A", "x", "-t", "x1z", B], b""),
    ("hexdump", ["hexdump", "-C", A], b""),
    ("rev", ["rev"], text),
    ("fold", ["fold", "-w", "7"], text),
    ("nl", ["nl"], text),
    ("tac", ["tac", A], b""),
    ("expand", ["expand"], b"a\tb\tc\n"),
    ("cksum", ["cksum", A], b""),
    ("dc", ["dc", "-e", "2 128 ^ p 7 k 1 3 / p"], b""),
    ("factor", ["factor", "600851475143", "1234567"], b""),
    ("true", ["true"], b""),
    ("false", ["false"], b""),
    ("test", ["test", "3", "-gt", "4"], b""),
    ("sh-loop", ["sh", "-c", "i=0; while [ $i -lt 200 ]; do i=$((i+1)); done; echo $i; exit 3"], b""),
    ("sh-pipe", ["sh", "-c", "seq 1 50 | sort -rn | head -3"], b""),
    ("gzip", ["sh", "-c", "gzip -9 -c | gzip -d | md5sum"], lines),
    ("bzip2", ["sh", "-c", "bzip2 -c | bzip2 -d | md5sum"], lines),
    ("xxd", ["xxd", B], b""),
    ("strings", ["strings", "-n", "8", BB], b""),
    ("date", ["date", "-u", "-d", "@1000000000"], b""),
    ("ls", ["ls", "-la", "/usr/share/doc/busybox-static" if os.path.isdir("/usr/share/doc/busybox-static") else "/"], b""),
]
for name, argv, stdin in busybox:
    cases.append((f"busybox-{name}", [BB] + argv, stdin))

coreutils = [
    ("sort", ["/usr/bin/sort", "-k2,2", "-k1n"], lines),
    ("sha256sum", ["/usr/bin/sha256sum", A, B], b""),
    ("md5sum", ["/usr/bin/md5sum"], lines),
    ("base64", ["/usr/bin/base64", "-w", "60"], lines),
    ("od", ["/usr/bin/od", "-c", B], b""),
    ("tr", ["/usr/bin/tr", "-s", "a-z", "A-Z"], text),
    ("wc", ["/usr/bin/wc"], lines),
    ("seq", ["/usr/bin/seq", "-w", "0", "0.5", "20"], b""),
    ("factor", ["/usr/bin/factor", "18446744073709551557", "340282366920938463463374607431768211297"], b""),
    ("ls", ["/bin/ls", "-l", "/usr"], b""),
]
for name, argv, stdin in coreutils:
    cases.append((f"coreutils-{name}", argv, stdin))

others = [
    ("gzip", ["/bin/sh", "-c", "gzip -c | gzip -dc | sha1sum"], lines * 20),
    ("xz", ["/bin/sh", "-c", "xz -3 -c | xz -dc | sha1sum"], lines * 20),
    ("python-bigint", ["/usr/bin/python3", "-c", "print(2**1000 % 10**40, pow(3, 10**5, 10**9+7))"], b""),
    ("python-float", ["/usr/bin/python3", "-c", "import math; print(math.pi, 1/3, math.sqrt(2), sum(i*0.1 for i in range(999)))"], b""),
    ("python-threads", ["/usr/bin/python3", "-c",
                        "import threading\nr=[]\nl=threading.Lock()\n"
                        "def f(i):\n  with l: r.append(sum(range(i*1000)))\n"
                        "ts=[threading.Thread(target=f,args=(i,)) for i in range(6)]\n"
                        "[t.start() for t in ts]; [t.join() for t in ts]; print(sorted(r))"], b""),
    ("python-exception", ["/usr/bin/python3", "-c", "import sys\ntry:\n  {}['x']\nexcept KeyError as e:\n  print('caught', e)\nsys.exit(5)"], b""),
    # subprocess: posix_spawn / vfork children, an exec error reported through shared memory.
    ("python-subprocess", ["/usr/bin/python3", "-c",
                           "import subprocess, sys\n"
                           "r = subprocess.run(['/bin/sh', '-c', 'echo out; echo err >&2; exit 4'], capture_output=True)\n"
                           "print(r.returncode, r.stdout, r.stderr)\n"
                           "print(subprocess.check_output([sys.executable, '-c', 'print(6 * 7)']))\n"
                           "try:\n  subprocess.run(['/nonexistent/program'])\nexcept FileNotFoundError as e:\n  print('missing:', e.errno)\n"
                           "p = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=False)\n"
                           "print(p.communicate(b'piped')[0], p.returncode)"], b""),
    ("python-stdin", ["/usr/bin/python3", "-c", "import sys; print(sum(int(l.split()[0]) for l in sys.stdin))"], lines),
    ("perl", ["/usr/bin/perl", "-e", 'my %h; $h{$_ % 7} += $_ for 1..1000; print join(",", map {"$_=$h{$_}"} sort keys %h), "\\n"; printf("%.12f\\n", atan2(1,1)*4)'], b""),
    ("sqlite3", ["/usr/bin/sqlite3", ":memory:", "create table t(a, b); insert into t select value, value*value from generate_series(1, 500); select count(*), sum(b), avg(a) from t;"], b""),
    ("sh-exec", ["/bin/sh", "-c", "exec /bin/echo exec works"], b""),
    ("sh-status", ["/bin/sh", "-c", "/bin/false; echo $?; (exit 9); echo $?"], b""),
    ("kill-self", ["/bin/sh", "-c", "kill -TERM $$"], b""),
    ("sh-script", ["/bin/sh", "-c", "printf '#!/bin/sh\\necho in script $1\\n' >s.sh; chmod +x s.sh; ./s.sh arg"], b""),
    # gcc and its cc1, as and ld children (execve), then the program it built.
    ("gcc", ["/bin/sh", "-c", "mkdir -p gcc.$$ && cd gcc.$$ && cat >t.c && /usr/bin/gcc -O2 t.c -o t -lm && ./t"],
     b'#include <math.h>\n#include <stdio.h>\nint main(void) { double s = 0; for (int i = 1; i < 1000; i++) '
     b's += sqrt(i) / i; printf("%.9f %d\\n", s, (int)sizeof(long)); return 3; }\n'),
]
for name, argv, stdin in others:
    cases.append((name, argv, stdin))
for name in ("user-signals", "user-jit", "user-threads", "user-interp", "user-smc", "user-spawn", "user-selfexe",
             "user-manythreads", "user-sigmask", "user-jitread"):
    if name in progs:
        cases.append((name[5:], [progs[name]], b""))
if "user-smc" in progs:  # threads patching one page, a handoff, 200 rounds; a JIT that flushes
    for mode in ("threads", "jit"):
        cases.append((f"smc-{mode}", [progs["user-smc"], mode], b""))
if "user-sigmask" in progs:
    cases.append(("sigmask-fault", [progs["user-sigmask"], "fault"], b""))
# Under a memory limit: the threads' resources must go with them.
with open(vireo, "rb") as f:
    sanitized = b"__asan_init" in f.read()  # its shadow memory does not fit a ulimit -v
if "user-manythreads" in progs and not sanitized:
    cases.append(("manythreads-ulimit", ["/bin/sh", "-c", f"ulimit -v 4000000; exec {progs['user-manythreads']}"], b""))
if "user-faults" in progs:
    for mode in ("unmapped", "noexec", "ud2", "div0", "smash", "null", "none"):
        cases.append((f"faults-{mode}", [progs["user-faults"], mode], b""))


def run(argv, stdin):
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=60, cwd=tmp)
    return p.returncode, p.stdout


def check(case):
    name, argv, stdin = case
    if not os.path.exists(argv[0]):
        return name, None, f"{argv[0]} not installed"
    native = run(argv, stdin)
    try:
        under = run([vireo, "user", "--"] + argv, stdin)
    except subprocess.TimeoutExpired:
        return name, False, "timed out under vireo user"
    if native == under:
        return name, True, ""
    detail = f"status {native[0]} vs {under[0]}"
    if native[1] != under[1]:
        detail += f"; stdout {native[1][:200]!r} vs {under[1][:200]!r}"
    return name, False, detail


def bad_elf():
    """Malformed executables: vireo user says why and exits 126."""
    results = []
    good = open("/bin/busybox", "rb").read(4096) if os.path.exists("/bin/busybox") else b""
    samples = {
        "empty": b"",
        "text": b"just some text\n",
        "bad-shebang": b"#!\n",
        "truncated": good[:40],
        "bad-class": good[:4] + b"\x01" + good[5:],
        "bad-phnum": good[:56] + b"\xff\xff" + good[58:],
        "bad-phoff": good[:32] + b"\xff" * 8 + good[40:],
        "garbage": bytes((i * 37) & 0xff for i in range(4096)),
    }
    for name, data in samples.items():
        path = os.path.join(tmp, f"bad-{name}")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)
        p = subprocess.run([vireo, "user", path], capture_output=True, timeout=20)
        ok = p.returncode == 126 and b"vireo user:" in p.stderr
        results.append((f"bad-elf-{name}", ok, f"status {p.returncode}, stderr {p.stderr[:200]!r}"))
    p = subprocess.run([vireo, "user", os.path.join(tmp, "missing")], capture_output=True, timeout=20)
    results.append(("bad-elf-missing", p.returncode == 127, f"status {p.returncode}"))
    return results


selected = [c for c in cases if not only or any(w in c[0] for w in only)]
failures = skipped = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for name, ok, detail in pool.map(check, selected):
        if ok is None:
            skipped += 1
            print(f"SKIP {name}: {detail}")
        else:
            print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
            failures += not ok
if not only or any("bad-elf" in w for w in only):
    for name, ok, detail in bad_elf():
        selected.append(name)
        print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
        failures += not ok
shutil.rmtree(tmp, ignore_errors=True)
print(f"{len(selected) - failures - skipped} passed, {failures} failed, {skipped} skipped")
sys.exit(1 if failures else 0)
