#!/bin/sh
# The iproute2 equivalent of what vimaged's linux platform does to start and stop N vimages
# with two bridged interfaces each (see bench_linux.py, which runs both and compares).
# usage: bench_linux_iproute2.sh HOST_NETNS PARENT PREFIX N
set -eu
host=$1 parent=$2 prefix=$3 n=$4
i=0
while [ "$i" -lt "$n" ]; do
    ns="${prefix}v$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    for b in 0 1; do
        ifname="ng${b}_v$i"
        ip -n "$host" link add "$ifname" link "$parent" \
            address "$(printf '02:00:%02x:00:%02x:%02x' "$b" $((i / 256)) $((i % 256)))" \
            type macvlan mode bridge
        ip -n "$host" link set "$ifname" netns "$ns"
    done
    i=$((i + 1))
done
i=0
while [ "$i" -lt "$n" ]; do
    ns="${prefix}v$i"
    ip -n "$ns" link del "ng0_v$i"
    ip -n "$ns" link del "ng1_v$i"
    ip netns del "$ns"
    i=$((i + 1))
done
