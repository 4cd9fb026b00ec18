#!/bin/sh
# Start one Redis data node of the HA set: as the replica of whichever node Sentinel names primary.
#
#   start-node.sh SELF_HOST SELF_PORT SENTINELS SERVICE WAIT_S DATA_DIR -- redis-server [ARGS...]
#
# SENTINELS is host:port,host:port,... (REDIS_SENTINELS). Why: a primary that crashed and is
# restarted at once (Docker's restart policy, scripts/run's supervisor) would come back as primary
# with its last snapshot, minutes old, before Sentinel even noticed it was gone; the replica then
# re-syncs from it and every stored ticker goes back in time (the failover drill saw ts go back by
# 100 s). So a node that has run before (DATA_DIR/.started exists) and that Sentinel still names
# primary does not serve: it waits, unreachable, up to WAIT_S seconds for Sentinel to mark it down
# and promote the replica (longer than down-after-milliseconds plus a failover), then starts as
# the new primary's replica. It starts as primary again only when Sentinel promoted nobody in that
# time (the replica was down too: its own data is then the newest there is). A first start, or no
# sentinel answering, starts with ARGS as given (redis-b's ARGS say --replicaof the first primary).
set -eu
self_host=$1 self_port=$2 sentinels=$3 service=$4 wait_s=$5 data_dir=$6
shift 6
[ "${1:-}" = "--" ] && shift

primary() {
    for s in $(echo "$sentinels" | tr ',' ' '); do
        answer=$(timeout 2 redis-cli -h "${s%:*}" -p "${s##*:}" --raw \
            SENTINEL get-master-addr-by-name "$service" 2>/dev/null | tr '\n' ' ') || continue
        case "$answer" in
            *[0-9]\ ) echo "$answer"; return 0 ;;
        esac
    done
    return 1
}

if [ -f "$data_dir/.started" ]; then
    deadline=$(( $(date +%s) + wait_s ))
    while current=$(primary); do
        if [ "$current" != "$self_host $self_port " ]; then
            echo "start-node: Sentinel names $current as primary: starting as its replica" >&2
            exec "$@" --replicaof ${current}
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "start-node: still named primary after ${wait_s}s (no replica promoted): starting as primary" >&2
            exec "$@" --replicaof no one
        fi
        sleep 0.5
    done
    echo "start-node: no sentinel answers: starting as configured" >&2
fi
touch "$data_dir/.started"
exec "$@"
