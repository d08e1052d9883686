#!/usr/bin/env bash
# Peer comparison: the engine's load benchmark (`credits bench`) against Redis and PostgreSQL
# on the same workload — an atomic debit only if the balance suffices, plus a ledger entry,
# from 64 concurrent clients over the same number of pre-funded accounts — at matching
# durability. Prints a Markdown table of ops/s, p50 and p99 with the ratio of credits to
# each peer, and writes it to a file. Run `Benchmarks/compare.sh --help` for the options.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: Benchmarks/compare.sh [options]

Compares `credits bench` with Redis (a Lua script through redis-benchmark EVALSHA) and
PostgreSQL (a conditional UPDATE plus INSERT through pgbench) on the same workload: an
atomic debit only if the balance suffices, plus a ledger entry, 64 concurrent clients,
uniform random accounts. Durability pairs:

  credits --durability strict    <->  Redis appendfsync always    <->  PostgreSQL synchronous_commit on
  credits --durability interval  <->  Redis appendfsync everysec  <->  PostgreSQL synchronous_commit off

credits runs twice per durability: single calls (--batch 1, one outstanding debit per
task, like the peers' clients) and batches (--batch 1000, latency per batch call).

Installs redis-server and postgresql from Debian's packages if they are missing (the only
traffic that leaves the machine); starts each server on 127.0.0.1 on a non-default port
with its data in a temporary folder, and stops it by its PID afterwards (also on error or
Ctrl-C). Builds credits (swift build -c release) if .build/release/credits is missing.

Options:
  --quick             100,000 accounts and 5 s per run (for trying it out)
  --accounts N        accounts in every system (default 1000000; env ACCOUNTS)
  --seconds S         target length of each measured run (default 20; env BENCH_SECONDS)
  --clients C         concurrent clients / tasks (default 64)
  --batch B           credits batch size of the batched rows (default 1000)
  --only LIST         comma-separated subset of credits,redis,postgres (default: all)
  --out FILE          where to write the Markdown report
                      (default Benchmarks/results/compare-<date>-<time>.md)
  --workdir DIR       parent of the temporary folder for all data (default $TMPDIR or /tmp);
                      fsync costs depend on its disk
  -h, --help          this help

Environment:
  CREDITS=PATH        a credits binary to use instead of the repository's release build
  PG_BIN=DIR          PostgreSQL's server binaries (default: newest /usr/lib/postgresql/*/bin)
  REDIS_PORT, PG_PORT first port to try (defaults 26379 and 25432; the next free one is used)

A full default run takes about 4-5 minutes on 2 cores (plus a first build of credits).
EOF
}

die() { echo "compare.sh: error: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

# ---------------------------------------------------------------------------------------
# Options

ARGS_GIVEN="$*"
ACCOUNTS="${ACCOUNTS:-1000000}"
RUN_SECONDS="${BENCH_SECONDS:-20}"
CLIENTS=64
BATCH=1000
ONLY="credits,redis,postgres"
OUT=""
WORKDIR_PARENT="${TMPDIR:-/tmp}"
QUICK=0
accounts_set=0
seconds_set=0

need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --accounts) need_value "$@"; ACCOUNTS="$2"; accounts_set=1; shift ;;
        --seconds) need_value "$@"; RUN_SECONDS="$2"; seconds_set=1; shift ;;
        --clients) need_value "$@"; CLIENTS="$2"; shift ;;
        --batch) need_value "$@"; BATCH="$2"; shift ;;
        --only) need_value "$@"; ONLY="$2"; shift ;;
        --out) need_value "$@"; OUT="$2"; shift ;;
        --workdir) need_value "$@"; WORKDIR_PARENT="$2"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    [ "$accounts_set" = 1 ] || ACCOUNTS=100000
    [ "$seconds_set" = 1 ] || RUN_SECONDS=5
fi

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_count "$ACCOUNTS" || die "--accounts must be a positive integer, not '$ACCOUNTS'"
is_count "$RUN_SECONDS" || die "--seconds must be a positive integer, not '$RUN_SECONDS'"
is_count "$CLIENTS" || die "--clients must be a positive integer, not '$CLIENTS'"
is_count "$BATCH" || die "--batch must be a positive integer, not '$BATCH'"
[ "$BATCH" -gt 1 ] || die "--batch is the size of the batched rows: give at least 2"
[ "$ACCOUNTS" -le 999999999999 ] || die "--accounts must stay below 10^12 (redis-benchmark's 12-digit keys)"

run_credits=0 run_redis=0 run_postgres=0
IFS=',' read -r -a only_list <<<"$ONLY"
for system in "${only_list[@]}"; do
    case "$system" in
        credits) run_credits=1 ;;
        redis) run_redis=1 ;;
        postgres | postgresql) run_postgres=1 ;;
        *) die "--only takes credits, redis and/or postgres, not '$system'" ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/Benchmarks/compare"
for helper in debit.lua debit.sql; do
    [ -f "$HERE/$helper" ] || die "missing $HERE/$helper"
done
[ -n "$OUT" ] || OUT="$REPO/Benchmarks/results/compare-$(date +%Y%m%d-%H%M%S).md"
[ -d "$WORKDIR_PARENT" ] || die "--workdir $WORKDIR_PARENT is not a directory"

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1
SUDO=""
[ "$IS_ROOT" = 1 ] || SUDO="sudo"


# ---------------------------------------------------------------------------------------
# Cleanup: the servers this script started, stopped by their PIDs, and the temporary data.

WORK=""
REDIS_PID=""
PG_PID=""

# Sends a signal to a PID and waits up to $3 seconds for the process to exit.
stop_pid() {
    local pid="$1" signal="$2" wait_s="$3" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

stop_redis() {
    [ -n "$REDIS_PID" ] || return 0
    if ! stop_pid "$REDIS_PID" TERM 30; then
        echo "compare.sh: redis-server $REDIS_PID did not stop; killing it" >&2
        stop_pid "$REDIS_PID" KILL 5 || true
    fi
    REDIS_PID=""
}

stop_postgres() {
    [ -n "$PG_PID" ] || return 0
    # SIGINT: PostgreSQL's fast shutdown. SIGQUIT (immediate) only if that hangs.
    if ! stop_pid "$PG_PID" INT 60; then
        echo "compare.sh: postgres $PG_PID did not stop; sending SIGQUIT" >&2
        stop_pid "$PG_PID" QUIT 10 || stop_pid "$PG_PID" KILL 5 || true
    fi
    PG_PID=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_redis
    stop_postgres
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Helpers

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "$* is missing and apt-get is not available: install it by hand"
    log "installing $* from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-upgrade "$@" >/dev/null
}

# A free TCP port on 127.0.0.1 from $1 on.
free_port() {
    local port="$1" i
    for ((i = 0; i < 50; i++, port++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port on 127.0.0.1 from $1 to $port"
}

# One numeric field of credits bench's one-line JSON.
json_field() {
    local value
    value="$(grep -o "\"$2\": *[-0-9.e+]*" <<<"$1" | head -n 1 | sed 's/.*: *//')"
    [ -n "$value" ] || die "no \"$2\" in credits bench output: $1"
    echo "$value"
}

# Integer with thousands separators (rounds).
commas() {
    awk -v x="$1" 'BEGIN {
        s = sprintf("%.0f", x); out = ""
        while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        print s out }'
}

# Latency in µs for the table: whole µs from 100 µs on, one decimal below.
micros() {
    if awk -v x="$1" 'BEGIN { exit !(x >= 100) }'; then commas "$1"; else awk -v x="$1" 'BEGIN { printf "%.1f", x }'; fi
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "—" }'; }

# Nearest-rank percentiles (p50 p99) of the numbers on stdin, one per line.
percentiles() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "0 0"; exit }
        i50 = int(0.50 * NR); if (i50 < 0.50 * NR) i50++; if (i50 < 1) i50 = 1
        i99 = int(0.99 * NR); if (i99 < 0.99 * NR) i99++; if (i99 < 1) i99 = 1
        print v[i50], v[i99] }'
}

# Results, by row id: ops/s, p50 µs, p99 µs, and how the row was run.
declare -A OPS P50 P99 HOW

# ---------------------------------------------------------------------------------------
# Prerequisites

if [ "$run_redis" = 1 ]; then
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1 \
        || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server redis-tools
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after installing it"
fi

PG_BIN_GIVEN="${PG_BIN:-}"
if [ "$run_postgres" = 1 ]; then
    find_pg_bin() {
        if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
        local dir
        dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
        echo "$dir"
    }
    PG_BIN="$(find_pg_bin)"
    if [ -z "${PG_BIN_GIVEN}" ] && { [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! command -v psql >/dev/null 2>&1; }; then
        apt_install postgresql
        PG_BIN="$(find_pg_bin)"
    fi
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
        die "no PostgreSQL server binaries (initdb, pg_ctl) under ${PG_BIN:-/usr/lib/postgresql/*/bin}; set PG_BIN"
    fi
    PSQL="$PG_BIN/psql"; [ -x "$PSQL" ] || PSQL="$(command -v psql)"
    PGBENCH="$PG_BIN/pgbench"; [ -x "$PGBENCH" ] || PGBENCH="$(command -v pgbench)" || die "pgbench is missing"
    if [ "$IS_ROOT" = 1 ]; then
        id postgres >/dev/null 2>&1 || die "PostgreSQL refuses to run as root and there is no 'postgres' user"
        command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is needed to run PostgreSQL as the postgres user"
    fi
fi

# Runs a command as the user PostgreSQL runs as: postgres when we are root, else ourselves.
as_pg() {
    if [ "$IS_ROOT" = 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

CREDITS_BIN=""
if [ "$run_credits" = 1 ]; then
    if [ -n "${CREDITS:-}" ]; then
        [ -x "$CREDITS" ] || die "CREDITS=$CREDITS is not an executable file"
        CREDITS_BIN="$CREDITS"
    elif [ -x "$REPO/.build/release/credits" ]; then
        CREDITS_BIN="$REPO/.build/release/credits"
    else
        command -v swift >/dev/null 2>&1 || die "no credits binary and no swift to build one: set CREDITS=/path/to/credits"
        log "building credits (swift build -c release --product credits); this takes a few minutes once"
        (
            cd "$REPO"
            # shellcheck disable=SC1091 # installs liblz4-dev and pkg-config if missing
            source scripts/deps
            swift build -c release --product credits >&2
        )
        CREDITS_BIN="$(cd "$REPO" && swift build -c release --show-bin-path)/credits"
        [ -x "$CREDITS_BIN" ] || die "the build did not produce $CREDITS_BIN"
    fi
    BUILD_DONE_AT=$SECONDS
fi
BUILD_DONE_AT="${BUILD_DONE_AT:-$SECONDS}"

WORK="$(mktemp -d "$WORKDIR_PARENT/credits-compare.XXXXXX")"
chmod 711 "$WORK" # PostgreSQL's user must reach its folder inside

# ---------------------------------------------------------------------------------------
# Redis: a fresh server per appendfsync mode, the accounts loaded with --pipe, then the
# Lua script through redis-benchmark EVALSHA. redis-benchmark has no duration option: a
# short calibration run gives the rate, and -n is that rate times --seconds.

REDIS_VERSION=""
redis_run() {
    local mode="$1" id="$2" dir port sha i calib_n rps n csv line expected xlen rewrites_before rewrites
    dir="$WORK/redis-$mode"
    mkdir -p "$dir"
    port="$(free_port "${REDIS_PORT:-26379}")" || exit 1
    log "Redis appendfsync $mode: starting redis-server on 127.0.0.1:$port (data in $dir)"
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --dir "$dir" \
        --appendonly yes --appendfsync "$mode" --save "" --auto-aof-rewrite-percentage 0 \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" ||
        die "redis-server did not start (see $dir/redis.log)"
    for ((i = 0; i < 100; i++)); do
        [ -s "$dir/redis.pid" ] && break
        sleep 0.1
    done
    [ -s "$dir/redis.pid" ] || die "redis-server wrote no pidfile (log: $(tail -n 5 "$dir/redis.log" 2>/dev/null))"
    REDIS_PID="$(cat "$dir/redis.pid")"
    local cli=(redis-cli -h 127.0.0.1 -p "$port")
    for ((i = 0; i < 100; i++)); do
        [ "$("${cli[@]}" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    [ "$("${cli[@]}" ping 2>/dev/null)" = PONG ] || die "redis-server on port $port does not answer"

    log "Redis appendfsync $mode: loading $ACCOUNTS accounts (redis-cli --pipe)"
    # SET acct:<12-digit n> 1000000000, n = 0 ..< ACCOUNTS: the keys redis-benchmark's
    # __rand_int__ produces with -r ACCOUNTS.
    awk -v n="$ACCOUNTS" 'BEGIN {
        for (i = 0; i < n; i++) {
            key = sprintf("acct:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$10\r\n1000000000\r\n", length(key), key
        } }' | "${cli[@]}" --pipe >"$dir/load.log" 2>&1 || die "loading Redis failed: $(tail -n 3 "$dir/load.log")"
    [ "$("${cli[@]}" dbsize)" = "$ACCOUNTS" ] || die "Redis holds $("${cli[@]}" dbsize) keys after loading, not $ACCOUNTS"
    # Start the run from a compact AOF (as PostgreSQL starts after a CHECKPOINT). Automatic
    # rewrites are off during the run: each is a fork competing for the two cores, and
    # Redis's best figure is the fair one to divide by.
    "${cli[@]}" bgrewriteaof >/dev/null
    for ((i = 0; i < 600; i++)); do
        local info
        info="$("${cli[@]}" info persistence)"
        if grep -q 'aof_rewrite_in_progress:0' <<<"$info" && grep -q 'aof_rewrite_scheduled:0' <<<"$info"; then break; fi
        sleep 0.1
    done
    sha="$("${cli[@]}" script load "$(cat "$HERE/debit.lua")")"
    [[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD failed: $sha"

    rewrites_before="$("${cli[@]}" info persistence | sed -n 's/^aof_rewrites:\([0-9]*\).*/\1/p')"
    local bench=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -r "$ACCOUNTS" --csv)
    local command=(EVALSHA "$sha" 2 "acct:__rand_int__" ledger 1)
    calib_n=$((CLIENTS * 500))
    log "Redis appendfsync $mode: calibrating ($calib_n EVALSHA)"
    csv="$(timeout 120 "${bench[@]}" -n "$calib_n" "${command[@]}" 2>"$dir/bench.err")" ||
        die "redis-benchmark failed: $(tail -n 3 "$dir/bench.err")"
    line="$(grep '^"EVALSHA' <<<"$csv" | tail -n 1)"
    rps="$(awk -F'","' '{ print $2 }' <<<"$line")"
    [ -n "$rps" ] || die "no rate in redis-benchmark's output: $csv"
    n="$(awk -v r="$rps" -v s="$RUN_SECONDS" 'BEGIN { n = int(r * s); if (n < 10000) n = 10000; print n }')"
    log "Redis appendfsync $mode: $n EVALSHA from $CLIENTS clients (~${RUN_SECONDS} s at ${rps%.*}/s)"
    csv="$(timeout $((RUN_SECONDS * 5 + 60)) "${bench[@]}" -n "$n" "${command[@]}" 2>"$dir/bench.err")" ||
        die "redis-benchmark failed or took too long: $(tail -n 3 "$dir/bench.err")"
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    line="$(grep '^"EVALSHA' <<<"$csv" | tail -n 1)"
    [ -n "$line" ] || die "unexpected redis-benchmark output: $csv"
    OPS[$id]="$(awk -F'","' '{ print $2 }' <<<"$line")"
    P50[$id]="$(awk -F'","' '{ printf "%.1f", $5 * 1000 }' <<<"$line")"
    P99[$id]="$(awk -F'","' '{ printf "%.1f", $7 * 1000 }' <<<"$line")"
    # Every call must have debited and written its entry (balances never run out here).
    expected=$((calib_n + n))
    xlen="$("${cli[@]}" xlen ledger)"
    [ "$xlen" = "$expected" ] || echo "compare.sh: warning: Redis ledger has $xlen entries, expected $expected" >&2
    rewrites="$("${cli[@]}" info persistence | sed -n 's/^aof_rewrites:\([0-9]*\).*/\1/p')"
    HOW[$id]="$n calls (after $calib_n to calibrate); AOF rewrites Redis started during them: $((rewrites - rewrites_before))"
    REDIS_VERSION="$(redis-server --version | grep -o 'v=[^ ]*' | cut -d= -f2)"
    log "Redis appendfsync $mode: ${OPS[$id]%.*} ops/s, p50 ${P50[$id]} µs, p99 ${P99[$id]} µs"
    stop_redis
    rm -rf "$dir"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL: one server (initdb in the temporary folder, owned by the postgres user);
# for each synchronous_commit setting the tables are made and loaded afresh, then pgbench
# runs the custom script for --seconds. p50/p99 come from pgbench's per-transaction logs.

PG_DIR="" PG_PORT_USED="" PG_VERSION=""
pg_start() {
    PG_DIR="$WORK/postgres"
    mkdir -p "$PG_DIR/sock"
    [ "$IS_ROOT" = 1 ] && chown -R postgres: "$PG_DIR"
    chmod 700 "$PG_DIR"
    PG_PORT_USED="$(free_port "${PG_PORT:-25432}")" || exit 1
    log "PostgreSQL: initdb in $PG_DIR/data"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale \
        >"$WORK/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$WORK/initdb.log")"
    log "PostgreSQL: starting on 127.0.0.1:$PG_PORT_USED"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT_USED -k $PG_DIR/sock -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" \
        start >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$PG_DIR/server.log" 2>/dev/null)"
    PG_PID="$(head -n 1 "$PG_DIR/data/postmaster.pid")"
    [[ "$PG_PID" =~ ^[0-9]+$ ]] || die "no PID in $PG_DIR/data/postmaster.pid"
    PG_VERSION="$("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
}

pg_psql() {
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT_USED" -U postgres -d postgres "$@"
}

postgres_run() {
    local sync="$1" id="$2" logdir out tps failed entries p50 p99
    log "PostgreSQL synchronous_commit $sync: loading $ACCOUNTS accounts (generate_series)"
    pg_psql >/dev/null <<EOF || die "loading PostgreSQL failed"
SET client_min_messages = warning;
DROP TABLE IF EXISTS accounts, ledger;
CREATE TABLE accounts (id bigint NOT NULL, balance bigint NOT NULL);
INSERT INTO accounts SELECT g, 1000000000 FROM generate_series(1, $ACCOUNTS) AS g;
ALTER TABLE accounts ADD PRIMARY KEY (id);
CREATE TABLE ledger (id bigserial, account bigint NOT NULL, amount bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
VACUUM ANALYZE accounts;
CHECKPOINT;
EOF
    logdir="$WORK/pgbench-$sync"
    local PG_THREADS=2
    [ "$CLIENTS" -ge 2 ] || PG_THREADS=1
    mkdir -p "$logdir"
    log "PostgreSQL synchronous_commit $sync: pgbench, $CLIENTS clients, ${RUN_SECONDS} s"
    out="$(PGOPTIONS="-c synchronous_commit=$sync" timeout $((RUN_SECONDS * 3 + 60)) \
        "$PGBENCH" -h 127.0.0.1 -p "$PG_PORT_USED" -U postgres -n -M prepared \
        -c "$CLIENTS" -j "$PG_THREADS" -T "$RUN_SECONDS" -f "$HERE/debit.sql" -D "accounts=$ACCOUNTS" \
        --log --log-prefix="$logdir/tx" postgres 2>&1)" || die "pgbench failed: $out"
    tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")"
    [ -n "$tps" ] || die "no tps in pgbench's output: $out"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")"
    [ "${failed:-0}" = 0 ] || echo "compare.sh: warning: pgbench reports $failed failed transactions" >&2
    # Per-transaction log: client_id transaction_no time(µs) script_no time_epoch time_us.
    read -r p50 p99 < <(cat "$logdir"/tx.* | awk '{ print $3 }' | percentiles)
    entries="$(pg_psql -At -c 'SELECT count(*) FROM ledger')"
    OPS[$id]="$tps"
    P50[$id]="$p50"
    P99[$id]="$p99"
    HOW[$id]="$entries transactions"
    log "PostgreSQL synchronous_commit $sync: ${tps%.*} tps, p50 $p50 µs, p99 $p99 µs"
    rm -rf "$logdir"
}

# ---------------------------------------------------------------------------------------
# credits: in process, 64 tasks, a fresh data directory per run, for --seconds.

CREDITS_VERSION=""
credits_run() {
    local durability="$1" batch="$2" id="$3" data json err
    data="$WORK/credits-$durability-$batch"
    err="$WORK/credits.err"
    local args=(bench --accounts "$ACCOUNTS" --concurrency "$CLIENTS" --batch "$batch" --durability "$durability"
                --duration "$RUN_SECONDS" --json)
    log "credits $durability batch $batch: $RUN_SECONDS s of debits from $CLIENTS tasks"
    rm -rf "$data"
    json="$(timeout $((RUN_SECONDS * 5 + 300)) "$CREDITS_BIN" "${args[@]}" --data "$data" 2>"$err")" ||
        die "credits bench failed or took too long: $(tail -n 5 "$err")"
    rm -rf "$data"
    [ "$(json_field "$json" failed)" = 0 ] || echo "compare.sh: warning: credits bench reports failed debits: $json" >&2
    OPS[$id]="$(json_field "$json" ops_per_sec)"
    P50[$id]="$(json_field "$json" p50_us)"
    P99[$id]="$(json_field "$json" p99_us)"
    HOW[$id]="$(json_field "$json" ops) debits in $(json_field "$json" seconds) s, $(json_field "$json" shards) shards, $(json_field "$json" records_per_fsync) records per fsync"
    log "credits $durability batch $batch: ${OPS[$id]} ops/s, p50 ${P50[$id]} µs, p99 ${P99[$id]} µs"
}

# ---------------------------------------------------------------------------------------
# The runs

log "$ACCOUNTS accounts, $CLIENTS clients, ~${RUN_SECONDS} s per run; temporary data in $WORK"

if [ "$run_redis" = 1 ]; then
    redis_run always redis_always
    redis_run everysec redis_everysec
fi

if [ "$run_postgres" = 1 ]; then
    pg_start
    postgres_run on pg_on
    postgres_run off pg_off
    stop_postgres
fi

if [ "$run_credits" = 1 ]; then
    CREDITS_VERSION="$("$CREDITS_BIN" version 2>/dev/null | head -n 1 || true)"
    credits_run strict 1 credits_strict_1
    credits_run strict "$BATCH" credits_strict_b
    credits_run interval 1 credits_interval_1
    credits_run interval "$BATCH" credits_interval_b
fi

ELAPSED=$((SECONDS - BUILD_DONE_AT))

# ---------------------------------------------------------------------------------------
# The report

cpu_model() {
    if command -v lscpu >/dev/null 2>&1; then
        lscpu | sed -n 's/^Model name: *//p' | head -n 1
    else
        sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1
    fi
}

row() {
    # id system durability calls [ratio-to ids...]
    local id="$1" system="$2" durability="$3" calls="$4" single="${5:-}" batched="${6:-}"
    local r1="—" rb="—"
    [ -z "${OPS[$id]:-}" ] && return 0
    if [ -n "$single" ] && [ -n "${OPS[$single]:-}" ]; then r1="$(ratio "${OPS[$single]}" "${OPS[$id]}")"; fi
    if [ -n "$batched" ] && [ -n "${OPS[$batched]:-}" ]; then rb="$(ratio "${OPS[$batched]}" "${OPS[$id]}")"; fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$system" "$durability" "$calls" \
        "$(commas "${OPS[$id]}")" "$(micros "${P50[$id]}")" "$(micros "${P99[$id]}")" "$r1" "$rb"
}

key_ratio() {
    local single="$1" batched="$2" peer="$3" label="$4"
    if [ -n "${OPS[$single]:-}" ] && [ -n "${OPS[$batched]:-}" ] && [ -n "${OPS[$peer]:-}" ]; then
        echo "- $label: **$(ratio "${OPS[$single]}" "${OPS[$peer]}")** with single debits, **$(ratio "${OPS[$batched]}" "${OPS[$peer]}")** with batches of $BATCH"
    fi
}

mkdir -p "$(dirname "$OUT")"
{
    echo "# credits vs Redis vs PostgreSQL: conditional debit plus ledger entry"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`Benchmarks/compare.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\`: $(commas "$ACCOUNTS") accounts, $CLIENTS concurrent clients, ~$RUN_SECONDS s per run, uniform random accounts, every debit succeeds (balances never run out)."
    echo
    echo "- Machine: $(nproc) cores, $(cpu_model), $(uname -sr), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); data on $(df -P "$WORKDIR_PARENT" | awk 'NR == 2 { print $1 }')"
    if [ "$run_credits" = 1 ]; then
        echo "- credits: ${CREDITS_VERSION:-?} ($CREDITS_BIN); $(swift --version 2>/dev/null | head -n 1 || echo 'swift: not on PATH')"
    fi
    if [ "$run_redis" = 1 ]; then echo "- Redis: $(redis-server --version | head -n 1)"; fi
    if [ "$run_postgres" = 1 ]; then echo "- PostgreSQL: $("$PG_BIN/postgres" --version); $("$PGBENCH" --version)"; fi
    echo
    echo "| System | Durability | Calls | ops/s | p50 µs | p99 µs | credits batch 1 ÷ this | credits batch $BATCH ÷ this |"
    echo "|---|---|---|--:|--:|--:|--:|--:|"
    row credits_strict_1 credits "strict (fsync before ack)" "single debits (--batch 1)"
    row credits_strict_b credits "strict (fsync before ack)" "batches of $BATCH (latency per batch)"
    row redis_always "Redis $REDIS_VERSION" "appendfsync always" "EVALSHA, one per client" credits_strict_1 credits_strict_b
    row pg_on "PostgreSQL ${PG_VERSION%% *}" "synchronous_commit on" "1 statement, one per client" credits_strict_1 credits_strict_b
    row credits_interval_1 credits "interval (fsync every 10 ms)" "single debits (--batch 1)"
    row credits_interval_b credits "interval (fsync every 10 ms)" "batches of $BATCH (latency per batch)"
    row redis_everysec "Redis $REDIS_VERSION" "appendfsync everysec" "EVALSHA, one per client" credits_interval_1 credits_interval_b
    row pg_off "PostgreSQL ${PG_VERSION%% *}" "synchronous_commit off" "1 statement, one per client" credits_interval_1 credits_interval_b
    echo
    echo "Ratios are ops/s of credits at the matching durability (strict for Redis always and"
    echo "PostgreSQL synchronous_commit on, interval for everysec and off) divided by the peer's:"
    echo
    key_ratio credits_strict_1 credits_strict_b redis_always "credits strict ÷ Redis appendfsync always"
    key_ratio credits_strict_1 credits_strict_b pg_on "credits strict ÷ PostgreSQL synchronous_commit on"
    key_ratio credits_interval_1 credits_interval_b redis_everysec "credits interval ÷ Redis appendfsync everysec"
    key_ratio credits_interval_1 credits_interval_b pg_off "credits interval ÷ PostgreSQL synchronous_commit off"
    echo
    echo "Notes:"
    echo "- credits runs in process: $CLIENTS tasks call the engine directly. Redis and PostgreSQL"
    echo "  are separate servers reached over loopback TCP from their own benchmark clients"
    echo "  (redis-benchmark, one thread; pgbench, 2 threads), which share the same $(nproc) cores."
    echo "- The batch rows send $BATCH debits per call; their p50/p99 are per batch call, not per debit."
    echo "- Latencies: credits from its own histogram; Redis from redis-benchmark --csv (its HDR"
    echo "  histogram, ms to µs); PostgreSQL nearest-rank p50/p99 over pgbench's per-transaction log."
    echo "- Loss windows differ in the relaxed rows: credits interval fsyncs every 10 ms, Redis"
    echo "  everysec every second, PostgreSQL synchronous_commit off within ~3 x wal_writer_delay (600 ms)."
    echo "- Work per debit: credits also checks the debit's idempotency key and draws it from the"
    echo "  account's grant; the peers do only the conditional decrement and the append. Redis:"
    echo "  GET, DECRBY and XADD to a ledger stream in a Lua script (Benchmarks/compare/debit.lua),"
    echo "  a fresh server per mode with the AOF rewritten after loading and automatic rewrites"
    echo "  off during the run (each is a fork on the same 2 cores); PostgreSQL: UPDATE ..."
    echo "  WHERE balance >= amount and INSERT into the ledger in one autocommit statement"
    echo "  (Benchmarks/compare/debit.sql, pgbench -M prepared), tables made afresh and a"
    echo "  CHECKPOINT before each run. Both servers otherwise on their default settings."
    echo "- Run lengths: redis-benchmark takes a count, not a time: a short calibration run first"
    echo "  sets it to ~$RUN_SECONDS s; pgbench runs -T $RUN_SECONDS, credits bench --duration $RUN_SECONDS."
    echo "- Runs:"
    for id in credits_strict_1 credits_strict_b credits_interval_1 credits_interval_b redis_always redis_everysec pg_on pg_off; do
        if [ -n "${HOW[$id]:-}" ]; then echo "  - $id: ${HOW[$id]}"; fi
    done
    echo "- Wall time of the comparison (without building credits): $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
} >"$OUT"

cat "$OUT"
log "report written to $OUT"
