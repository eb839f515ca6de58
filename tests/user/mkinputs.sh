#!/bin/sh
# Fixed inputs for the compare tests, made in the current directory.
#   mkinputs.sh PROGRAM   (PROGRAM's own bytes serve as binary data)
awk 'BEGIN { x = 12345; for (i = 0; i < 3000; i++) { x = (x * 1103 + 12345) % 1000003; print x % 20000 - 10000 } }' >nums.txt
awk 'BEGIN { for (i = 1; i <= 2000; i++) printf "line %d the quick brown fox %d jumps %s\n", i, i * i, (i % 7 ? "over" : "under") }' >text.txt
head -c 200000 "$1" >data.bin
head -c 200000 "$1" | tr '\000' 'x' >data2.bin
if [ -x /bin/busybox ]; then
    /bin/busybox gzip -9 -c data.bin >data.gz
    /bin/busybox bzip2 -c data.bin >data.bz2
fi
printf 'scale=30\n4*a(1)\ne(1)\nl(10)\nsqrt(2)\n2^100\n1/7\ns(1)+c(1)\n' >bc.in
