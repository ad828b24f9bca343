#!/bin/sh
# Runs inside a Linux guest for tests/linux/disk.py: /dev/vda is a writable
# 64 MiB ext4 image (serial vireo-disk), /dev/vdb a read-only ext4 image
# holding readme.txt, /dev/vdc a qcow2 overlay over an ext4 image holding
# base.txt. One PASS or FAIL line per check; the SHA256 and INFO
# lines are for the host, which then looks at the images itself.
. /vireo/checks.sh

# Elapsed time in centiseconds, from /proc/uptime.
now() {
	awk '{ printf "%d", $1 * 100 }' /proc/uptime
}
# "N MiB/s" for $1 MiB in $2 centiseconds.
rate() {
	awk -v mib="$1" -v cs="$2" 'BEGIN { if (cs < 1) cs = 1; printf "%.1f MiB/s", mib * 100 / cs }'
}

check "/dev/vda is a block device" [ -b /dev/vda ]
check "vda is 64 MiB" [ "$(blockdev --getsize64 /dev/vda)" = 67108864 ]
check "vda has the serial given" [ "$(cat /sys/block/vda/serial)" = vireo-disk ]
check "vda has a queue per vCPU" [ "$(ls /sys/block/vda/mq | wc -l)" = "$(grep -c ^processor /proc/cpuinfo)" ]
check "vda is writable" [ "$(blockdev --getro /dev/vda)" = 0 ]
check "vda has a write-back cache (FLUSH)" [ "$(cat /sys/block/vda/queue/write_cache)" = "write back" ]

mkdir -p /mnt/rw /mnt/ro
check "vda mounts as ext4" mount -t ext4 /dev/vda /mnt/rw
# The guest's CPU is interpreted: random bytes and SHA-256 cost seconds a MiB.
write_files() {
	dd if=/dev/urandom of=/mnt/rw/random.bin bs=1M count=4 2>/dev/null &&
		sha256sum /mnt/rw/random.bin | cut -d' ' -f1 >/tmp/random.sum &&
		echo "written by a Vireo guest" >/mnt/rw/hello.txt &&
		sync
}
check "4 MiB of random bytes and a text file written, synced" write_files
echo "SHA256 random.bin $(cat /tmp/random.sum)"
check "vda unmounts" umount /mnt/rw
echo 3 >/proc/sys/vm/drop_caches
check "vda mounts again" mount -t ext4 /dev/vda /mnt/rw
check "the file reads back the same" [ "$(sha256sum /mnt/rw/random.bin | cut -d' ' -f1)" = "$(cat /tmp/random.sum)" ]

# Throughput, not judged: direct I/O, so the disk and not the page cache.
t0=$(now)
dd if=/dev/zero of=/mnt/rw/zero.bin bs=1M count=32 oflag=direct conv=fsync 2>/dev/null
t1=$(now)
dd if=/dev/vda of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null
t2=$(now)
echo "INFO dd: write 32 MiB $(rate 32 $((t1 - t0))), read 64 MiB $(rate 64 $((t2 - t1))) (O_DIRECT, 1 MiB blocks)"
check "a file removed, its blocks trimmed (DISCARD)" sh -c 'rm /mnt/rw/zero.bin && sync && fstrim /mnt/rw'
check "vda unmounts again" umount /mnt/rw

check "vdb is read-only (sysfs)" [ "$(cat /sys/block/vdb/ro)" = 1 ]
check "vdb is read-only (blockdev --getro)" [ "$(blockdev --getro /dev/vdb)" = 1 ]
check "writing to vdb fails" sh -c '! dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null'
check "vdb mounts read-only" mount -t ext4 -o ro /dev/vdb /mnt/ro
check "vdb's file" [ "$(cat /mnt/ro/readme.txt)" = "a read-only disk" ]
check "vdb unmounts" umount /mnt/ro

mkdir -p /mnt/overlay
check "vdc (qcow2 overlay) mounts as ext4" mount -t ext4 /dev/vdc /mnt/overlay
check "vdc shows its base image's file" [ "$(cat /mnt/overlay/base.txt)" = "from the base image" ]
check "a file written into vdc" sh -c 'echo "written into a qcow2 overlay" >/mnt/overlay/overlay.txt && sync'
check "vdc unmounts" umount /mnt/overlay

checks_done
