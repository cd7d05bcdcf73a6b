#!/bin/sh
# Stand-in for ssh in the multi-host test: "nsexec.sh [-x] HOST CMD..." runs CMD in HOST's
# network namespace (MPICH's Hydra calls its launcher exactly like ssh).
while [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
ns=$(echo "$host" | sed -n 's/^10\.77\.0\.\([0-9]*\)$/dgns\1/p')
[ -n "$ns" ] || { echo "nsexec.sh: unknown host $host" >&2; exit 1; }
exec ip netns exec "$ns" sh -c "$*"
