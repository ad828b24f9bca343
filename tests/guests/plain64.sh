#!/bin/sh
# Makes a plain ELF64 copy of a guest: no multiboot header, entry _start64.
set -eu
entry=$(nm "$1" | awk '$3 == "_start64" { print "0x" $1 }')
[ -n "$entry" ] || { echo "plain64.sh: no _start64 in $1" >&2; exit 1; }
exec objcopy -R .multiboot --set-start="$entry" "$1" "$2"
