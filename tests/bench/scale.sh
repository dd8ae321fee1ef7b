#!/usr/bin/env bash
# One node holding 1,000,000 locks (the "1M held locks" target): builds
# ./cmd/node from the work tree and cmd/scalebench, then scalebench starts
# the node on free 127.0.0.1 ports with a fresh data dir, fills it with
# pipelined LOCK.ACQUIREs, reads VmRSS, times the snapshot of the full state
# from the node's log, SIGTERMs it, restarts it on the same data dir, times
# exec -> first LOCK.INFO and -> /health/ready, checks the locks survived,
# loads the node that still holds them (64 clients acquiring and releasing
# keys of their own for 20 s) while sampling VmRSS, and prints a markdown
# table with the verdicts.
#
#   tests/bench/scale.sh                 # 1,000,000 locks (a few minutes on 2 cores)
#   LOCKS=100000 tests/bench/scale.sh    # smoke
#   PPROF=1 tests/bench/scale.sh         # also heap/CPU profiles of the node (kept in the work dir)
#
# Environment: LOCKS [1000000], CONNS [128], PIPELINE [200], TTL [30m],
# ORDER [random] (or sequential: the order keys are acquired in),
# CHURN [20s] (the load after the restart; 0 skips it), CHURN_CONNS [64],
# SNAPSHOT_INTERVAL [20s] (node --snapshot-interval), NODE_ARGS (extra node
# flags), NODE_ENV (extra environment of the node, e.g. GOMEMLIMIT=400MiB),
# NODE_BIN (prebuilt node), PPROF=1, KEEP=1 (keep the work dir),
# OUT (also write the table to this file).
# Exit status: scalebench's (0 all targets met, 1 a target missed, 3 run failed).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin

WORK=$(mktemp -d /tmp/scalebench.XXXXXX)
SB_PID=
STATUS=3
log() { printf '[scale.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

cleanup() {
	local pid
	if [[ -n "$SB_PID" ]] && kill -0 "$SB_PID" 2>/dev/null; then
		kill -TERM "$SB_PID" 2>/dev/null || true
	fi
	# scalebench starts the node with Pdeathsig; stop it here too in case.
	if [[ -f "$WORK/run/node.pid" ]]; then
		pid=$(<"$WORK/run/node.pid")
		if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$WORK/"; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	if [[ "${KEEP:-0}" == 1 || "${PPROF:-0}" == 1 || $STATUS -ge 3 ]]; then
		log "kept $WORK (node logs in $WORK/run)"
	else
		rm -rf "$WORK"
		log "removed $WORK (KEEP=1 keeps it)"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${NODE_BIN:-}" ]]; then
	cp "$NODE_BIN" "$WORK/node"
else
	log "building ./cmd/node (work tree) and scalebench"
	(cd "$ROOT" && go build -o "$WORK/node" ./cmd/node)
fi
(cd "$HERE" && go build -o "$WORK/scalebench" ./cmd/scalebench)

args=(-node "$WORK/node" -dir "$WORK/run"
	-locks "${LOCKS:-1000000}" -conns "${CONNS:-128}" -pipeline "${PIPELINE:-200}"
	-ttl "${TTL:-30m}" -snapshot-interval "${SNAPSHOT_INTERVAL:-20s}" -order "${ORDER:-random}"
	-churn "${CHURN:-20s}" -churn-conns "${CHURN_CONNS:-64}")
[[ "${PPROF:-0}" == 1 ]] && args+=(-pprof)
[[ -n "${NODE_ARGS:-}" ]] && args+=(-node-args "$NODE_ARGS")
[[ -n "${NODE_ENV:-}" ]] && args+=(-node-env "$NODE_ENV")

log "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), $(go version | cut -d' ' -f3)"
"$WORK/scalebench" "${args[@]}" >"$WORK/table.md" &
SB_PID=$!
set +e
wait "$SB_PID"
STATUS=$?
set -e
SB_PID=
cat "$WORK/table.md"
[[ -n "${OUT:-}" ]] && cp "$WORK/table.md" "$OUT"
exit "$STATUS"
