#!/bin/sh
# Runs inside a Linux guest built by tools/mkguest (tests/linux/boot.py puts
# it at /vireo/check.sh and boots with vireo.script=/vireo/check.sh): one
# PASS or FAIL line per check, exit status the number of failures.
# vireo.test.cpus=N on the kernel command line is the vCPU count to expect.
. /vireo/checks.sh

want=$(sed -n 's/.*vireo\.test\.cpus=\([0-9]*\).*/\1/p' /proc/cmdline)
have=$(grep -c '^processor' /proc/cpuinfo)
echo "INFO $(uname -r): $have processor(s), online $(cat /sys/devices/system/cpu/online)"
check "/proc/cpuinfo shows $want processor(s)" [ "$have" = "$want" ]
check "every vCPU is online" [ "$(cat /sys/devices/system/cpu/online)" = "$([ "$want" = 1 ] && echo 0 || echo "0-$((want - 1))")" ]

no_kernel_complaints() {
	! dmesg | grep -E 'BUG:|WARNING:|Call Trace|Oops|panic|alg: .*(fail|error)|TSC .*unstable|clocksource .* unstable'
}
check "the kernel log is clean (no bugs, warnings, oopses, unstable clocks, failed self-tests)" no_kernel_complaints

clock_advances() {
	u1=$(cut -d' ' -f1 /proc/uptime)
	d1=$(date +%s)
	sleep 2
	u2=$(cut -d' ' -f1 /proc/uptime)
	d2=$(date +%s)
	echo "INFO uptime $u1 -> $u2, date $d1 -> $d2"
	awk -v a="$u1" -v b="$u2" 'BEGIN { exit !(b - a >= 1.9 && b - a < 6) }' && [ $((d2 - d1)) -ge 1 ] && [ $((d2 - d1)) -le 6 ]
}
check "the clock advances (sleep 2)" clock_advances
check "the RTC gave the wall-clock date" [ "$(date +%Y)" -ge 2024 ]
check "the clocksource is the TSC" [ "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)" = tsc ]

modules_loaded() {
	for m in virtio_pci virtio_blk virtio_net virtio_console virtio_rng; do
		grep -q "^$m " /proc/modules || { echo "INFO $m is not loaded"; return 1; }
	done
}
check "init loaded the virtio modules" modules_loaded
check "init mounted devtmpfs, devpts and tmpfs" sh -c 'grep -q "^devtmpfs /dev " /proc/mounts && grep -q " /dev/pts devpts" /proc/mounts && grep -q " /tmp tmpfs" /proc/mounts'

timer_ticks() {
	grep '^ *LOC:' /proc/interrupts
	grep '^ *LOC:' /proc/interrupts | awk -v n="$want" '{ for (i = 2; i <= n + 1; i++) if ($i + 0 == 0) exit 1 }'
}
check "every vCPU takes local timer interrupts" timer_ticks

runs_on_each_cpu() {
	c=0
	while [ $c -lt "$want" ]; do
		on=$(taskset -c $c awk '{ print $39 }' /proc/self/stat)
		[ "$on" = $c ] || { echo "INFO pinned to CPU $c, ran on $on"; return 1; }
		c=$((c + 1))
	done
}
check "a process runs on each vCPU" runs_on_each_cpu

work() {
	sum=$(seq 1 20000 | awk '{ s += $1 } END { print s }')
	[ "$sum" = 200010000 ] && echo "vireo" | sha256sum | grep -q '^28e09d6291374790'
}
check "user-space work gives the right answers" work

added_binary() {
	xz --version | grep -q liblzma &&
		[ "$(seq 1 5000 | xz -6 | xz -dc | md5sum)" = "$(seq 1 5000 | md5sum)" ]
}
check "a host binary added with its shared libraries runs (xz from mkguest --add)" added_binary

checks_done
