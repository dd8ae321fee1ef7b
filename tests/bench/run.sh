#!/usr/bin/env bash
# Benchmark matrix for issue #7: starts, on 127.0.0.1 only,
#   - a 3-node cluster of this server (fsync on, the default),
#   - redis-server with appendonly yes + appendfsync always (lock baseline),
#   - redis-server with its defaults (PING baseline),
#   - a 3-member etcd cluster (Debian's etcd-server, fsync on by default),
# runs lockbench over systems x modes x client counts, runs
# `redis-benchmark -t ping` against redis and a node and pipelined
# `redis-benchmark -t set -P 16` against durable redis and every node, measures
# hashicorp/raft alone with the server's raft settings, log store and raftoverlap
# (raftceiling: the most a server of this design reaches here), reads every node's
# raft_election_count / raft_term before and after, stops everything by PID
# and writes tests/bench/RESULTS.md.
#
#   tests/bench/run.sh                  # the full matrix (54 runs x (DURATION+WARMUP), about 13 minutes)
#   QUICK=1 tests/bench/run.sh          # smoke: clients 1 and 4, 2s runs
#
# Environment (defaults in brackets):
#   SYSTEMS   [native native-leader setnx redsync redis-aof etcd]  (native-leader = native -leader-only)
#   MODES     [uncontended hot wait]
#   CLIENTS   [1 64 256]            QUICK: [1 4]
#   DURATION  [10s]                 QUICK: [2s]   measured time per run
#   WARMUP    [2s]                  QUICK: [0.5s]
#   TTL       [10s]   WAIT [5s]   POLL [1ms] (client-side polling of setnx/redis/redsync in wait mode)
#   PING_N    [200000]              QUICK: [20000]   requests per redis-benchmark -t ping test
#   PIPE_N    [50000]               QUICK: [5000]    requests per pipelined redis-benchmark -t set
#   OUT       [tests/bench/RESULTS.md]
#   NODE_REV  build ./cmd/node from this git revision (git archive) instead of the work tree
#   NODE_BIN  use this prebuilt node binary instead of building one
#   CEILING   [1]   0 skips the raftceiling runs (one per client count and pack)
#   KEEP=1    keep the temp dir (data, logs, JSON) after the run
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

if [[ "${QUICK:-0}" == 1 ]]; then
	CLIENTS=${CLIENTS:-"1 4"}
	DURATION=${DURATION:-2s}
	WARMUP=${WARMUP:-0.5s}
	PING_N=${PING_N:-20000}
	PIPE_N=${PIPE_N:-5000}
else
	CLIENTS=${CLIENTS:-"1 64 256"}
	DURATION=${DURATION:-10s}
	WARMUP=${WARMUP:-2s}
	PING_N=${PING_N:-200000}
	PIPE_N=${PIPE_N:-50000}
fi
SYSTEMS=${SYSTEMS:-"native native-leader setnx redsync redis-aof etcd"}
MODES=${MODES:-"uncontended hot wait"}
TTL=${TTL:-10s}
WAIT=${WAIT:-5s}
POLL=${POLL:-1ms}
OUT=${OUT:-$HERE/RESULTS.md}

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- tools (Debian packages, installed only when missing) ---
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v etcd >/dev/null || need+=(etcd-server)
command -v curl >/dev/null || need+=(curl)
command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]] || { echo "run.sh: Go is required" >&2; exit 1; }
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
if ((${#need[@]})); then
	log "installing ${need[*]} with apt-get"
	if [[ $(id -u) != 0 ]]; then
		echo "run.sh: need root to apt-get install ${need[*]}" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d /tmp/lockbench.XXXXXX)
RES=$WORK/results
mkdir -p "$WORK/logs" "$RES/runs"
PIDS=()
NAMES=()
STATUS=1

cleanup() {
	local i pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	local t0=$SECONDS
	for i in "${!PIDS[@]}"; do
		pid=${PIDS[$i]}
		for _ in $(seq 1 100); do # 10 s at most per process
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if ((SECONDS - t0 > 2)); then
			log "${NAMES[$i]} stopped $((SECONDS - t0))s after SIGTERM"
		fi
		if kill -KILL "$pid" 2>/dev/null; then
			log "${NAMES[$i]} (pid $pid) ignored SIGTERM for 10s: killed"
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ "${KEEP:-0}" == 1 || $STATUS != 0 ]]; then
		log "kept $WORK (logs in $WORK/logs)"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ---
if [[ -n "${NODE_BIN:-}" ]]; then
	log "using node binary $NODE_BIN"
	cp "$NODE_BIN" "$WORK/node"
	NODE_DESC="prebuilt $NODE_BIN"
elif [[ -n "${NODE_REV:-}" ]]; then
	log "building ./cmd/node at $NODE_REV (git archive) and the bench tools"
	mkdir -p "$WORK/src"
	git -C "$ROOT" archive "$NODE_REV" | tar -x -C "$WORK/src"
	(cd "$WORK/src" && go build -o "$WORK/node" ./cmd/node)
	NODE_DESC="$(git -C "$ROOT" rev-parse --short "$NODE_REV")"
else
	log "building ./cmd/node (work tree) and the bench tools"
	(cd "$ROOT" && go build -o "$WORK/node" ./cmd/node)
	NODE_DESC="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
fi
(cd "$HERE" && go build -o "$WORK/lockbench" ./cmd/lockbench && go build -o "$WORK/benchtool" ./cmd/benchtool &&
	go build -o "$WORK/raftceiling" ./cmd/raftceiling)
LB=$WORK/lockbench
BT=$WORK/benchtool

read -r N1H N2H N3H N1R N2R N3R N1P N2P N3P REDIS_AOF REDIS_DEF E1C E2C E3C E1P E2P E3P <<<"$("$BT" ports 17)"

# wait_for NAME SECONDS CMD...: retry CMD every 0.2s until it succeeds.
wait_for() {
	local name=$1 secs=$2
	shift 2
	local i
	for i in $(seq 1 $((secs * 5))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	echo "run.sh: $name did not come up in ${secs}s; logs in $WORK/logs" >&2
	return 1
}

# --- this server: 3 nodes ---
log "starting a 3-node cluster (RESP $N1R $N2R $N3R, HTTP $N1H $N2H $N3H)"
start_node() { # id http resp raft peers
	"$WORK/node" --id "$1" --port "$2" --resp-port "$3" --raft-port "$4" --peers "$5" \
		--bind 127.0.0.1 --advertise 127.0.0.1 --data-dir "$WORK/distlock" --log-level warn \
		>"$WORK/logs/$1.log" 2>&1 &
	PIDS+=($!)
	NAMES+=("$1")
}
start_node node1 "$N1H" "$N1R" "$N1P" "node2:127.0.0.1:$N2P,node3:127.0.0.1:$N3P"
start_node node2 "$N2H" "$N2R" "$N2P" "node1:127.0.0.1:$N1P,node3:127.0.0.1:$N3P"
start_node node3 "$N3H" "$N3R" "$N3P" "node1:127.0.0.1:$N1P,node2:127.0.0.1:$N2P"
for h in "$N1H" "$N2H" "$N3H"; do
	wait_for "node on HTTP $h" 60 curl -fsS "http://127.0.0.1:$h/health/ready"
done

# --- redis ---
log "starting redis-server (appendfsync always on $REDIS_AOF, defaults on $REDIS_DEF)"
mkdir -p "$WORK/redis-aof" "$WORK/redis-def"
redis-server --port "$REDIS_AOF" --bind 127.0.0.1 --dir "$WORK/redis-aof" \
	--appendonly yes --appendfsync always --save '' --daemonize no \
	>"$WORK/logs/redis-aof.log" 2>&1 &
PIDS+=($!)
NAMES+=(redis-aof)
redis-server --port "$REDIS_DEF" --bind 127.0.0.1 --dir "$WORK/redis-def" --daemonize no \
	>"$WORK/logs/redis-def.log" 2>&1 &
PIDS+=($!)
NAMES+=(redis-default)
wait_for "redis-server $REDIS_AOF" 20 redis-cli -h 127.0.0.1 -p "$REDIS_AOF" ping
wait_for "redis-server $REDIS_DEF" 20 redis-cli -h 127.0.0.1 -p "$REDIS_DEF" ping

# --- etcd: 3 members ---
log "starting a 3-member etcd cluster (clients $E1C $E2C $E3C)"
ECLUSTER="e1=http://127.0.0.1:$E1P,e2=http://127.0.0.1:$E2P,e3=http://127.0.0.1:$E3P"
start_etcd() { # name client peer
	etcd --name "$1" --data-dir "$WORK/etcd-$1" \
		--listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
		--listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
		--initial-cluster "$ECLUSTER" --initial-cluster-state new --initial-cluster-token lockbench \
		--logger zap --log-level warn >"$WORK/logs/etcd-$1.log" 2>&1 &
	PIDS+=($!)
	NAMES+=("etcd-$1")
}
start_etcd e1 "$E1C" "$E1P"
start_etcd e2 "$E2C" "$E2P"
start_etcd e3 "$E3C" "$E3P"
for c in "$E1C" "$E2C" "$E3C"; do
	wait_for "etcd on $c" 60 sh -c "curl -fsS http://127.0.0.1:$c/health | grep -q '\"health\":\"true\"'"
done

NODES="127.0.0.1:$N1R,127.0.0.1:$N2R,127.0.0.1:$N3R"
NODE_METRICS="127.0.0.1:$N1H,127.0.0.1:$N2H,127.0.0.1:$N3H"
ETCD="127.0.0.1:$E1C,127.0.0.1:$E2C,127.0.0.1:$E3C"
ETCD_METRICS=$ETCD
METRIC_URLS=("node1=127.0.0.1:$N1H" "node2=127.0.0.1:$N2H" "node3=127.0.0.1:$N3H"
	"etcd-e1=127.0.0.1:$E1C" "etcd-e2=127.0.0.1:$E2C" "etcd-e3=127.0.0.1:$E3C")

# --- metadata ---
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "nproc: $(nproc)"
	echo "CPU: $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
	echo "kernel: $(uname -srm)"
	echo "memory: $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "go: $(go version)"
	echo "this server: $NODE_DESC, 3 nodes, fsync on"
	echo "redis: $(redis-server --version | awk '{print $3}' | sed 's/v=//'), appendonly yes, appendfsync always (locks); defaults (ping)"
	echo "etcd: $(etcd --version | awk '/^etcd Version/{print $3}'), 3 members; client go.etcd.io/etcd/client/v3 $(cd "$HERE" && go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)"
	echo "matrix: systems [$SYSTEMS], modes [$MODES], clients [$CLIENTS], $DURATION measured after $WARMUP warm-up, ttl $TTL, wait $WAIT, poll $POLL"
	echo "load on the machine at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RES/meta.txt"

log "measuring this machine's fsync and loopback round trip (the latency floor)"
"$BT" floor -dir "$WORK/distlock" >"$RES/floor.json"
"$BT" scrape "${METRIC_URLS[@]}" >"$RES/metrics-before.json"

# --- the matrix ---
secs() { # a Go duration to whole seconds, rounded up (s and ms forms)
	local d=$1
	case $d in
	*ms) echo $(((${d%ms} + 999) / 1000)) ;;
	*s) awk -v v="${d%s}" 'BEGIN{printf "%d", (v == int(v)) ? v : int(v) + 1}' ;;
	*m) echo $((${d%m} * 60)) ;;
	*) echo 60 ;;
	esac
}
RUN_LIMIT=$(($(secs "$DURATION") + $(secs "$WARMUP") + $(secs "$WAIT") + 120))

total=0 failed=0
for sys in $SYSTEMS; do
	case $sys in
	native) args=(-system native -addrs "$NODES" -metrics "$NODE_METRICS") ;;
	native-leader) args=(-system native -addrs "$NODES" -leader-only -metrics "$NODE_METRICS") ;;
	setnx) args=(-system setnx -addrs "$NODES" -metrics "$NODE_METRICS") ;;
	redsync) args=(-system redsync -addrs "$NODES" -metrics "$NODE_METRICS") ;;
	redis-aof) args=(-system redis -addrs "127.0.0.1:$REDIS_AOF") ;;
	redis-default) args=(-system redis -addrs "127.0.0.1:$REDIS_DEF") ;;
	redsync-redis) args=(-system redsync -addrs "127.0.0.1:$REDIS_AOF") ;;
	etcd) args=(-system etcd -addrs "$ETCD" -metrics "$ETCD_METRICS") ;;
	*)
		echo "run.sh: unknown system $sys" >&2
		exit 2
		;;
	esac
	for mode in $MODES; do
		for c in $CLIENTS; do
			total=$((total + 1))
			f="$RES/runs/$sys-$mode-$c.json"
			log "$sys $mode $c clients"
			rc=0
			timeout -k 10 "$RUN_LIMIT" "$LB" "${args[@]}" -label "$sys" -mode "$mode" -clients "$c" \
				-duration "$DURATION" -warmup "$WARMUP" -ttl "$TTL" -wait "$WAIT" -poll "$POLL" -json \
				>"$f" 2>"$WORK/logs/lockbench-$sys-$mode-$c.log" || rc=$?
			if [[ $rc != 0 ]]; then
				failed=$((failed + 1))
				msg=$(tail -n 3 "$WORK/logs/lockbench-$sys-$mode-$c.log" | tr '\n"\\' '   ')
				log "  exit $rc: $msg"
				if ! grep -q '"system"' "$f" 2>/dev/null; then
					printf '{"label":"%s","system":"%s","mode":"%s","clients":%d,"error":"exit %d: %s"}\n' \
						"$sys" "$sys" "$mode" "$c" "$rc" "$msg" >"$f"
				fi
			fi
		done
	done
done

# redis_bench TSV LABEL PORT ARGS...: one redis-benchmark run; its
# "TEST: N requests per second" lines go to $RES/TSV as label, test, N.
redis_bench() {
	local tsv=$1 label=$2 port=$3 out
	shift 3
	out=$(timeout -k 5 300 redis-benchmark -h 127.0.0.1 -p "$port" -q "$@" 2>&1 | tr '\r' '\n') || true
	echo "$out" >"$WORK/logs/${tsv%.tsv}-$label.log"
	# lines like "PING_INLINE: 81234.57 requests per second, p50=0.303 msec"
	echo "$out" | awk -v l="$label" -F': ' '/requests per second/ {split($2, a, " "); print l "\t" $1 "\t" a[1]}' >>"$RES/$tsv"
}

# --- PING baseline ---
log "redis-benchmark -t ping ($PING_N requests, 50 connections, no pipelining)"
: >"$RES/ping.tsv"
for target in "redis $REDIS_DEF" "node $N1R"; do
	read -r label port <<<"$target"
	redis_bench ping.tsv "$label" "$port" -t ping -n "$PING_N" -c 50 -P 1
done

# --- pipelined writes (not a target): 4 connections, 16 SETs in flight each ---
log "redis-benchmark -t set -P 16 ($PIPE_N requests, 4 connections): durable Redis vs each node"
: >"$RES/pipeline.tsv"
for target in "redis-aof $REDIS_AOF" "node1 $N1R" "node2 $N2R" "node3 $N3R"; do
	read -r label port <<<"$target"
	redis_bench pipeline.tsv "$label" "$port" -t set -n "$PIPE_N" -c 4 -P 16
done

# --- hashicorp/raft alone (the work tree's walstore, also with NODE_REV) ---
if [[ ${CEILING:-1} == 1 ]]; then
	log "raftceiling: hashicorp/raft alone, clients [$CLIENTS]"
	if ! timeout -k 10 "$((RUN_LIMIT * 4))" "$WORK/raftceiling" -clients "$(echo $CLIENTS | tr ' ' ',')" \
		-duration "$DURATION" -warmup "$WARMUP" -json -dir "$WORK/ceiling" \
		>"$RES/ceiling.json" 2>"$WORK/logs/raftceiling.log"; then
		log "  raftceiling failed: $(tail -n 3 "$WORK/logs/raftceiling.log" | tr '\n' ' ')"
		rm -f "$RES/ceiling.json"
	fi
fi

"$BT" scrape "${METRIC_URLS[@]}" >"$RES/metrics-after.json"

"$BT" report -dir "$RES" -out "$OUT"
log "wrote $OUT ($total runs, $failed did not complete cleanly)"
STATUS=0
