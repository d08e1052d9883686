#!/usr/bin/env bash
# Alternating A/B runs of two `credits` release binaries on the debit paths an issue must not
# slow down (docs/performance.md): in-memory batches and single calls, strict single calls,
# and charges with routing. A shared machine's speed drifts between minutes, so each pair
# runs back to back, in alternating order, and the table compares medians.
#
#   Benchmarks/ab.sh BEFORE AFTER [PAIRS]      (PAIRS: 1 to 50, default 5)
#
# AB_AFTER_ARGS adds options to AFTER's runs only (e.g. AB_AFTER_ARGS=--governance, a flag
# BEFORE may not know); AB_ONLY=batch,single keeps only those configurations.
set -euo pipefail
read -r -a after_extra <<< "${AB_AFTER_ARGS:-}"
only=${AB_ONLY:-}
before=${1:?usage: Benchmarks/ab.sh BEFORE AFTER [PAIRS]}
after=${2:?usage: Benchmarks/ab.sh BEFORE AFTER [PAIRS]}
pairs=${3:-5}
[[ "$pairs" =~ ^[0-9]+$ ]] && [ "$pairs" -ge 1 ] && [ "$pairs" -le 50 ] || { echo "ab.sh: PAIRS is 1 to 50" >&2; exit 2; }
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run() { # binary label args...
    local binary=$1 label=$2 data=""
    shift 2
    if [[ " $* " == *" --durability strict "* ]]; then
        data=$(mktemp -d)
        set -- "$@" --data "$data"
    fi
    local value
    value=$("$binary" bench "$@" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["ops_per_sec"])')
    [ -n "$data" ] && rm -rf "$data"
    echo "$label $value" >> "$results"
}

configurations=(
    "batch|--accounts 100000 --ops 2000000"
    "single|--accounts 100000 --batch 1 --ops 300000"
    "strict-single|--accounts 100000 --batch 1 --ops 100000 --durability strict"
    "charge-routing|--accounts 100000 --batch 1 --operation charge-routing --ops 200000"
)
for configuration in "${configurations[@]}"; do
    name=${configuration%%|*}
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
    read -r -a arguments <<< "${configuration#*|}"
    for ((pair = 0; pair < pairs; pair++)); do
        if ((pair % 2 == 0)); then
            run "$before" "$name before" "${arguments[@]}"; run "$after" "$name after" "${arguments[@]}" "${after_extra[@]}"
        else
            run "$after" "$name after" "${arguments[@]}" "${after_extra[@]}"; run "$before" "$name before" "${arguments[@]}"
        fi
    done
done
python3 - "$results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, which, value = line.split()
    rows[(name, which)].append(float(value))
names = list(dict.fromkeys(name for name, _ in rows))
print("| configuration | before (ops/s, runs) | after (ops/s, runs) | median before | median after | after/before |")
print("|---|---|---|---|---|---|")
for name in names:
    before, after = rows[(name, "before")], rows[(name, "after")]
    b, a = statistics.median(before), statistics.median(after)
    print(f"| {name} | {', '.join(f'{x / 1000:.0f}k' for x in before)} | {', '.join(f'{x / 1000:.0f}k' for x in after)} "
          f"| {b / 1000:.0f}k | {a / 1000:.0f}k | {a / b:.2f} |")
PY
