#!/bin/sh
# Runs inside a Linux guest (tests/linux/net.py puts it at /vireo/net.sh):
# brings eth0 up on the network the kernel command line names, then one
# PASS or FAIL line per check; exit status the number of failures.
#   vireo.test.net=user|tap       slirp (DHCP, 10.0.2.0/24) or a tap (10.0.3.2/24)
#   vireo.test.server=IP:PORT     the test's echo server
#   vireo.test.sink=PORT          ... and its sink, on the same address
#   vireo.test.sinkbytes=N        bytes to push to the sink
#   vireo.test.queues=N           queue pairs eth0 should have
#   vireo.test.cpus=N             vCPUs: one echo exchange from each
. /vireo/checks.sh
param() {
	sed -n "s/.*vireo\.test\.$1=\([^ ]*\).*/\1/p" /proc/cmdline
}
net=$(param net)
server=$(param server)
host=${server%:*}
port=${server#*:}
sink=$(param sink)
sinkbytes=$(param sinkbytes)
queues=$(param queues)
cpus=$(param cpus)

check "eth0 exists (virtio_net bound to the device)" [ -d /sys/class/net/eth0 ]
echo "INFO eth0 $(cat /sys/class/net/eth0/address), driver features $(cat /sys/class/net/eth0/device/features 2>/dev/null)"
ip link set eth0 up

dhcp() {
	cat >/tmp/udhcpc.sh <<'EOS'
#!/bin/sh
case $1 in
bound | renew)
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}"
	echo "INFO DHCP: $ip/$mask router $router dns $dns"
	;;
esac
exit 0
EOS
	chmod +x /tmp/udhcpc.sh
	udhcpc -i eth0 -s /tmp/udhcpc.sh -n -q -t 10 -T 1
}
if [ "$net" = user ]; then
	check "DHCP from slirp gives an address (udhcpc)" dhcp
	check "the address is 10.0.2.15/24" sh -c 'ip addr show eth0 | grep -q "inet 10.0.2.15/24"'
else
	ip addr add 10.0.3.2/24 dev eth0
	check "carrier is up" [ "$(cat /sys/class/net/eth0/carrier)" = 1 ]
	check "ping 10.0.3.1 (ICMP through the tap)" ping -c 3 -W 5 "$host"
fi

# One exchange from each vCPU: pinned, each transmits on its CPU's queue.
seq 1 30000 >/tmp/sent
want=$(sha256sum </tmp/sent | cut -d' ' -f1)
exchange() {
	rm -f /tmp/reply
	taskset -c "$1" nc -w 20 "$host" "$port" </tmp/sent >/tmp/reply || return 1
	first=$(head -n 1 /tmp/reply)
	got=$(tail -n +2 /tmp/reply | sha256sum | cut -d' ' -f1)
	echo "INFO vCPU $1: reply '$first', $(wc -c </tmp/reply) bytes"
	[ "$first" = "PONG $want" ] && [ "$got" = "$want" ]
}
c=0
while [ $c -lt "$cpus" ]; do
	check "TCP from vCPU $c to $server: the server got our bytes and sent them back" exchange $c
	c=$((c + 1))
done

queue_pairs() {
	n=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)
	echo "INFO queues: $(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
	[ "$n" = "$queues" ] && [ "$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)" = "$queues" ]
}
check "eth0 has $queues queue pair(s)" queue_pairs
grep virtio /proc/interrupts | sed 's/^/INFO /'
if [ "$queues" -gt 1 ]; then
	second_pair() {
		grep -E 'virtio[0-9]+-(input|output)\.1' /proc/interrupts |
			awk '{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i } END { exit !(s > 0) }'
	}
	check "the second queue pair carried traffic (its interrupts are non-zero)" second_pair
fi

push() {
	dd if=/dev/zero bs=64k count=$((sinkbytes / 65536)) 2>/dev/null | nc -w 20 "$host" "$sink"
}
check "push $sinkbytes bytes to the sink" push

no_kernel_complaints() {
	! dmesg | grep -E 'BUG:|WARNING:|Call Trace|Oops|panic|virtio_net.*(error|fail)|rx error'
}
check "the kernel log is clean" no_kernel_complaints
checks_done
