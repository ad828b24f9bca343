#!/usr/bin/env bash
# vireo user against native and Debian's qemu-x86_64 on real programs:
# prints one line per workload (best of RUNS, in CPU seconds: user + system
# of the program and its children, which a shared machine disturbs less than
# wall-clock time; MEASURE=wall for wall-clock seconds) with the ratios to
# native, then the geometric means.
#   tests/bench/user-speed.sh [BUILD_DIR] [RUNS]     (default: build, 3)
# Targets (docs/dbt-translator.md): vireo/native <= 1.5, qemu/vireo >= 3.
set -euo pipefail
build=${1:-build}
runs=${2:-3}
vireo=$(realpath "$build/tools/vireo")
qemu=$(command -v qemu-x86_64 || true)
work=$(mktemp -d /tmp/vireo-user-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

head -c 64000000 /dev/urandom >"$work/rand"
seq 1 2000000 | sort -R --random-source=<(yes) >"$work/lines"
head -c 8000000 "$work/lines" >"$work/text"

workloads=(
	"sha256sum|/usr/bin/sha256sum $work/rand"
	"md5sum|/usr/bin/md5sum $work/rand"
	"sort -n|/usr/bin/sort -n $work/lines"
	"gzip -6|/bin/gzip -6 -c $work/text"
	"xz -2|/usr/bin/xz -2 -c $work/text"
	"python3 loop|/usr/bin/python3 -c 'import sys; sys.setrecursionlimit(9999); print(sum(i * i % 7 for i in range(3000000)))'"
	"python3 fib|/usr/bin/python3 -c 'f = lambda n: n if n < 2 else f(n - 1) + f(n - 2); print(f(26))'"
	"perl regex|/usr/bin/perl -e '\$n = 0; for (1..400000) { \$n++ if \"x\$_\" =~ /^x(\\d+)7\$/ } print \"\$n\\n\"'"
	"sqlite3|/usr/bin/sqlite3 :memory: 'with recursive c(x) as (select 1 union all select x + 1 from c where x < 1000000) select sum(x * x % 13) from c;'"
	"busybox awk|/bin/busybox awk '{ s += \$1 } END { print s }' $work/lines"
)

best() { # best of $runs seconds of a shell command
	MEASURE=${MEASURE:-cpu} python3 - "$runs" "$1" <<'PY'
import os, resource, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2]
def now():
    if os.environ["MEASURE"] == "wall":
        return time.perf_counter()
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
best = None
for _ in range(runs):
    t = now()
    subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    t = now() - t
    best = t if best is None else min(best, t)
print(f"{best:.3f}")
PY
}

printf "%-14s %9s %9s %9s %12s %12s\n" workload native vireo qemu vireo/native qemu/vireo
results=()
for w in "${workloads[@]}"; do
	name=${w%%|*}
	cmd=${w#*|}
	prog=${cmd%% *}
	[ -x "$prog" ] || { printf "%-14s (%s not installed)\n" "$name" "$prog"; continue; }
	n=$(best "$cmd")
	v=$(best "$vireo user -- $cmd")
	if [ -n "$qemu" ]; then q=$(best "$qemu $cmd"); else q=nan; fi
	results+=("$n $v $q")
	python3 -c "
n, v, q = $n, $v, float('$q')
print(f'%-14s %9.3f %9.3f %9.3f %12.2f %12.2f' % ('$name', n, v, q, v / n, q / v))"
done
python3 - "${results[@]}" <<'PY'
import math, sys
rows = [tuple(float(x) for x in r.split()) for r in sys.argv[1:]]
def gm(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")
print("%-14s %9s %9s %9s %12.2f %12.2f" % ("geomean", "", "", "", gm([v / n for n, v, q in rows]),
                                           gm([q / v for n, v, q in rows])))
PY
