#!/usr/bin/env bash
# Runs one test guest on one machine and judges it by its output and status.
#   run-guest.sh MACHINE GUEST.elf [QEMU-STYLE ARGS...]
# MACHINE is qemu (the reference: qemu-system-x86_64 -accel tcg), or dbt or
# kvm: Vireo with that engine, given the same QEMU-style command line
# (VIREO names the vireo binary).
# A guest passes when it exits through port 0xf4 with 0 (status 1 under the
# QEMU convention (v << 1) | 1), printed at least one PASS line and no FAIL.
# Exit 77 means skipped; the reason is printed.
set -u
machine=$1
guest=$2
shift 2
limit=${GUEST_TIMEOUT:-90}
# A guest that reboots the machine sets RUN_GUEST_REBOOT=1.
no_reboot=-no-reboot
[ "${RUN_GUEST_REBOOT:-}" = 1 ] && no_reboot=

case $machine in
qemu)
	if ! command -v qemu-system-x86_64 >/dev/null; then
		echo "SKIP: qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)"
		exit 77
	fi
	cmd=(qemu-system-x86_64 -accel tcg -kernel "$guest"
		-device isa-debug-exit,iobase=0xf4,iosize=4 -serial stdio -display none $no_reboot "$@")
	want_status=1
	;;
dbt | kvm)
	vireo=${VIREO:-$(dirname "$0")/../build/tools/vireo}
	cmd=("$vireo" -accel "$machine" -kernel "$guest"
		-device isa-debug-exit,iobase=0xf4,iosize=4 -serial stdio -display none $no_reboot "$@")
	want_status=1
	if [ "$machine" = kvm ] && ! [ -r /dev/kvm -a -w /dev/kvm ]; then
		echo "SKIP: /dev/kvm is not accessible here, so the kvm engine cannot run"
		exit 77
	fi
	;;
*)
	echo "run-guest.sh: unknown machine '$machine'" >&2
	exit 2
	;;
esac

out=$(timeout "$limit" "${cmd[@]}" </dev/null 2>&1)
status=$?
printf '%s\n' "$out"

fail() {
	echo "run-guest.sh: $guest on $machine: $*"
	exit 1
}
[ $status -eq 124 ] && fail "timed out after ${limit}s"
grep -q '^FAIL' <<<"$out" && fail "a check failed"
grep -q '^PASS' <<<"$out" || fail "no check ran"
grep -Eq '^DONE [0-9]+ checks, 0 failed' <<<"$out" || fail "no summary line"
[ $status -eq $want_status ] || fail "exit status $status, want $want_status"
exit 0
