#!/usr/bin/env bash
# How `credits bench` throughput scales with accounts, shards and concurrency, and how the
# scenarios compare: runs a grid of short in-memory loads and prints Markdown tables.
#
#   Benchmarks/scaling.sh [--seconds S] [--runs N] [--quick] [--out FILE]
#
# Each cell is the median of --runs runs (default 3) of --seconds seconds (default 10).
# --quick: one run of 3 s per cell and no 10M-account row. Needs a release build of
# `credits` (built here if missing; set CREDITS to use another binary).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
runs=3
quick=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --quick) quick=1; seconds=3; runs=1; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "${CREDITS:-}" ]; then
  source scripts/deps
  swift build -c release --product credits >&2
  CREDITS="$(swift build -c release --show-bin-path)/credits"
fi

# The median ops/s (and that run's p50/p99 in µs) of $runs runs of `credits bench "$@"`.
median_run() {
  local results=()
  for _ in $(seq "$runs"); do
    results+=("$("$CREDITS" bench --json --duration "$seconds" "$@" 2>/dev/null | tail -n 1)")
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
rows = sorted((json.loads(line) for line in sys.stdin if line.strip()), key=lambda r: r["ops_per_sec"])
row = rows[len(rows) // 2]
print("%d %.1f %.1f %.0f" % (row["ops_per_sec"], row["p50_us"], row["p99_us"], row.get("resident_bytes_per_account", 0)))'
}

millions() { awk -v n="$1" 'BEGIN { printf "%.2f", n / 1000000 }'; }
report() { if [ -n "$out" ]; then tee -a "$out"; else cat; fi; }
[ -n "$out" ] && : > "$out"

{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r); $("$CREDITS" version 2>/dev/null | head -n 1)"
  echo "Each cell: median of $runs run(s) of $seconds s, in memory, uniform debits unless named."
  echo
  echo "| accounts | batch 1,000: M debits/s | p99 per batch | single calls, 64 tasks: M debits/s | p99 per call | resident bytes/account |"
  echo "|---|---|---|---|---|---|"
} | report
account_rows="10000 100000 1000000 10000000"
[ "$quick" = 1 ] && account_rows="10000 100000 1000000"
for accounts in $account_rows; do
  read -r batched b50 b99 resident < <(median_run --accounts "$accounts")
  read -r single s50 s99 _ < <(median_run --accounts "$accounts" --batch 1)
  printf '| %s | %s | %.0f µs | %s | %.0f µs | %s |\n' "$accounts" "$(millions "$batched")" "$b99" \
    "$(millions "$single")" "$s99" "$resident" | report
done

{
  echo
  echo "| shards (1M accounts, 64 tasks) | batch 1,000: M debits/s | single calls: M debits/s |"
  echo "|---|---|---|"
} | report
for shards in 2 4 8 16 32; do
  read -r batched _ _ _ < <(median_run --shards "$shards")
  read -r single _ _ _ < <(median_run --shards "$shards" --batch 1)
  printf '| %s | %s | %s |\n' "$shards" "$(millions "$batched")" "$(millions "$single")" | report
done

{
  echo
  echo "| tasks (1M accounts, 16 shards) | batch 1,000: M debits/s | single calls: M debits/s | single calls: p99 |"
  echo "|---|---|---|---|"
} | report
for tasks in 1 8 64 256; do
  read -r batched _ _ _ < <(median_run --concurrency "$tasks")
  read -r single _ s99 _ < <(median_run --concurrency "$tasks" --batch 1)
  printf '| %s | %s | %s | %.0f µs |\n' "$tasks" "$(millions "$batched")" "$(millions "$single")" "$s99" | report
done

{
  echo
  echo "| scenario (1M accounts, 64 tasks) | batch 1,000: M ops/s | single calls: M ops/s | single calls: p50 / p99 |"
  echo "|---|---|---|---|"
} | report
for scenario in uniform hot enterprise reserve-settle mixed; do
  if [ "$scenario" = mixed ]; then
    batched="-"
  else
    read -r ops _ _ _ < <(median_run --scenario "$scenario")
    batched=$(millions "$ops")
  fi
  read -r single s50 s99 _ < <(median_run --scenario "$scenario" --batch 1)
  printf '| %s | %s | %s | %.1f / %.0f µs |\n' "$scenario" "$batched" "$(millions "$single")" "$s50" "$s99" | report
done
