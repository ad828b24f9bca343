#!/usr/bin/env bash
# The dbt engine's speed on a CPU-bound guest, beside native and QEMU TCG,
# measured in the same run. Prints a table; asserts nothing.
#   tests/bench/cpu-speed.sh [BUILD_DIR] [REPEATS]
set -eu
build=${1:-build}
repeats=${2:-3}
guest=$build/tests/bench/bench-guest.elf
native=$build/tests/bench/bench-native
vireo=$build/tools/vireo

best() { sort -n | head -1; }
now() { date +%s.%N; }

checksum_native=$($native | awk '{print $2}')
t_native=$(for _ in $(seq "$repeats"); do $native | awk '{print $4}'; done | best)

t_vireo=$(for _ in $(seq "$repeats"); do
	s=$(now); $vireo run --engine dbt --stats --kernel "$guest" >/tmp/vireo-bench.$$ 2>&1; e=$(now)
	echo "$e - $s" | bc -l
done | best)
insns=$(awk '/^vireo: [0-9]+ instructions,/ {print $2}' /tmp/vireo-bench.$$)
checksum_vireo=$(awk '/^checksum/ {print $2}' /tmp/vireo-bench.$$)
rm -f /tmp/vireo-bench.$$

t_qemu=NA checksum_qemu=NA
if command -v qemu-system-x86_64 >/dev/null; then
	t_qemu=$(for _ in $(seq "$repeats"); do
		s=$(now)
		qemu-system-x86_64 -accel tcg -kernel "$guest" -device isa-debug-exit,iobase=0xf4,iosize=4 \
			-serial stdio -display none -no-reboot >/tmp/qemu-bench.$$ 2>&1 || true
		e=$(now); echo "$e - $s" | bc -l
	done | best)
	checksum_qemu=$(awk '/^checksum/ {print $2}' /tmp/qemu-bench.$$ | tr -d '\r')
	rm -f /tmp/qemu-bench.$$
fi

echo "CPU-bound guest workload ($insns guest instructions under Vireo), best of $repeats"
printf '%-28s %10s %12s %12s %s\n' "" seconds "vs native" "vs QEMU" checksum
printf '%-28s %10.3f %12s %12s %s\n' native "$t_native" 1.00 - "$checksum_native"
ratio() { [ "$2" = NA ] && echo - || echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
printf '%-28s %10.3f %12s %12s %s\n' "qemu-system-x86_64 tcg" "${t_qemu/NA/0}" "$(ratio "$t_qemu" "$t_native")" 1.00 "$checksum_qemu"
printf '%-28s %10.3f %12s %12s %s\n' "vireo dbt (interpreter)" "$t_vireo" "$(ratio "$t_vireo" "$t_native")" "$(ratio "$t_vireo" "$t_qemu")" "$checksum_vireo"
echo "vireo dbt: $(echo "$insns / $t_vireo / 1000000" | bc -l | xargs printf '%.0f') million guest instructions per second (wall time incl. start-up)"
[ "$checksum_vireo" = "$checksum_native" ] || echo "WARNING: checksums differ"
