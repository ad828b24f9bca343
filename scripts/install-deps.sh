#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages Vireo needs to build and test,
# and only those that are missing. Says what it installs.
#   install-deps.sh        what make and make check need
#   install-deps.sh fuzz   ... and clang with libFuzzer, for make fuzz
set -euo pipefail

packages=(
	# build
	gcc make meson ninja-build pkg-config binutils
	# dbt engine: instruction decoder
	libzydis-dev
	# virtio-blk: disk I/O through io_uring
	liburing-dev
	# user networking (-netdev user)
	libslirp-dev
	# reference machine for the test guests
	qemu-system-x86
	# vireo user: programs its tests run natively and translated, and
	# qemu-x86_64 for its benchmark
	busybox-static qemu-user
	# qcow2: compressed clusters; qemu-img and qemu-io, the reference for the image tests
	zlib1g-dev qemu-utils
)
if [ "${1:-}" = fuzz ]; then
	# libFuzzer targets: the compiler, its fuzzer and sanitizer runtimes, llvm-symbolizer
	packages+=(clang libclang-rt-dev llvm)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done

# tools/mkguest (make run, the Linux tests) fetches Debian's kernel and
# busybox with apt-get download, which needs apt's package lists.
lists=yes
compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || lists=

if [ ${#missing[@]} -eq 0 ] && [ -n "$lists" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
else
	sudo=
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: apt has no package lists: apt-get update"
	$sudo apt-get update -q >/dev/null ||
		echo "install-deps: apt-get update failed: the Linux guest tests will be skipped"
	exit 0
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
