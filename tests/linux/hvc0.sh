#!/bin/sh
# Runs inside a Linux guest for tests/linux/hvc0.py, whose console is the
# virtio console (console=hvc0): the host types a line when it sees READY,
# and this script echoes it back.
. /vireo/checks.sh

cat /proc/consoles
check "the kernel's console is hvc0" grep -q '^hvc0 .*E' /proc/consoles
check "this script's terminal is hvc0" [ "$(tty)" = /dev/hvc0 ]
echo READY
line=
read -r -t 60 line
echo "ECHO <$line>"
check "the line typed on the host came through hvc0" [ "$line" = "hello through hvc0" ]
checks_done
