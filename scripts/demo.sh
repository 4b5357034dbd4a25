#!/usr/bin/env bash
# demo.sh — start an emq-router and an emq-jobmanager on 127.0.0.1, run
# `emq-cli demo` against them, stop both, and say where the logs are.
#
#   BUILD=build scripts/demo.sh          (what `make demo` runs)
#
# Environment (all optional):
#   BUILD                  build directory (default: build)
#   EMQ_DEMO_JOBS          jobs to run (default: 300)
#   EMQ_DEMO_CONCURRENCY   worker processes of the job manager (default: 4)
#   EMQ_DEMO_FRONTEND_PORT, EMQ_DEMO_BACKEND_PORT, EMQ_DEMO_ADMIN_PORT
#                          ports (default: EventMQ's 47291, 47290, 47293, or
#                          free ones when any of those is taken)
#
# Exit status: the demo's, or 1 when the router or job manager did not come up.
set -u

BUILD=${BUILD:-build}
BIN=$BUILD/bin
JOBS=${EMQ_DEMO_JOBS:-300}
CONCURRENCY=${EMQ_DEMO_CONCURRENCY:-4}

for program in emq-router emq-jobmanager emq-cli; do
    if [ ! -x "$BIN/$program" ]; then
        echo "demo: $BIN/$program is missing; run make first" >&2
        exit 1
    fi
done

# A port is taken when something accepts a connection on it.
port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_free_port() {
    local port tries=0
    while [ $tries -lt 200 ]; do
        port=$(( 20000 + RANDOM % 40000 ))
        if ! port_taken "$port"; then
            echo "$port"
            return 0
        fi
        tries=$((tries + 1))
    done
    return 1
}

FRONTEND_PORT=${EMQ_DEMO_FRONTEND_PORT:-47291}
BACKEND_PORT=${EMQ_DEMO_BACKEND_PORT:-47290}
ADMIN_PORT=${EMQ_DEMO_ADMIN_PORT:-47293}
if port_taken "$FRONTEND_PORT" || port_taken "$BACKEND_PORT" || port_taken "$ADMIN_PORT"; then
    echo "demo: one of the ports $FRONTEND_PORT/$BACKEND_PORT/$ADMIN_PORT is taken; picking free ones"
    if ! { FRONTEND_PORT=$(pick_free_port) && BACKEND_PORT=$(pick_free_port) \
           && ADMIN_PORT=$(pick_free_port); }; then
        echo "demo: no free port found" >&2
        exit 1
    fi
fi
FRONTEND=tcp://127.0.0.1:$FRONTEND_PORT
BACKEND=tcp://127.0.0.1:$BACKEND_PORT
ADMIN=tcp://127.0.0.1:$ADMIN_PORT

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/emq-demo-XXXXXX") || exit 1
# The demo uses its own settings only, not a host's /etc/eventmq.conf.
: > "$LOGDIR/empty.conf"
export EVENTMQ_CONFIG_FILE=$LOGDIR/empty.conf
unset EMQ_BROKER_ADDR EMQ_ADMIN_ADDR

ROUTER_PID=
JM_PID=
CLI=("$BIN/emq-cli" --addr "$FRONTEND" --admin-addr "$ADMIN")

# Waits up to $2 seconds for process $1 to exit; true when it did.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$JM_PID" ] && kill -0 "$JM_PID" 2>/dev/null; then
        kill -TERM "$JM_PID" 2>/dev/null
        wait_exit "$JM_PID" 10 || { echo "demo: job manager did not stop; killing it"; kill -KILL "$JM_PID" 2>/dev/null; }
    fi
    if [ -n "$ROUTER_PID" ] && kill -0 "$ROUTER_PID" 2>/dev/null; then
        "${CLI[@]}" disconnect >>"$LOGDIR/cli.log" 2>&1
        wait_exit "$ROUTER_PID" 10 || { echo "demo: router did not stop; killing it"; kill -KILL "$ROUTER_PID" 2>/dev/null; }
    fi
    wait 2>/dev/null
    echo "demo: logs are in $LOGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: router on $FRONTEND (frontend), $BACKEND (backend), $ADMIN (admin)"
"$BIN/emq-router" --frontend "$FRONTEND" --backend "$BACKEND" --admin "$ADMIN" \
    --data-dir "$LOGDIR/data" >"$LOGDIR/router.log" 2>&1 &
ROUTER_PID=$!

"$BIN/emq-jobmanager" --backend-addr "$BACKEND" --queues '[[10,"default"]]' \
    --concurrent-jobs "$CONCURRENCY" --plugin-dir "$BUILD/plugins" \
    --exec-allow '/bin/*' --name demo >"$LOGDIR/jobmanager.log" 2>&1 &
JM_PID=$!

# Ready when the router lists the job manager.
deadline=$((SECONDS + 20))
until "${CLI[@]}" workers --json 2>>"$LOGDIR/cli.log" | grep -q '"demo-'; do
    if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
        echo "demo: the router exited; last lines of its log:" >&2
        tail -n 20 "$LOGDIR/router.log" >&2
        exit 1
    fi
    if ! kill -0 "$JM_PID" 2>/dev/null; then
        echo "demo: the job manager exited; last lines of its log:" >&2
        tail -n 20 "$LOGDIR/jobmanager.log" >&2
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "demo: the job manager did not register within 20 s" >&2
        exit 1
    fi
    sleep 0.1
done
echo "demo: job manager registered with $CONCURRENCY workers; running $JOBS jobs"

"${CLI[@]}" demo --jobs "$JOBS"
status=$?
if [ $status -eq 0 ]; then
    echo "demo: done"
else
    echo "demo: emq-cli demo exited with status $status" >&2
fi
exit $status
