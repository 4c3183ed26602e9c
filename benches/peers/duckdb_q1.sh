#!/usr/bin/env bash
# A peer a user might reach for instead: DuckDB (batch, no lateness, exact quantiles) on the
# same file and the same question as Q1 (per model, region and one-minute window: count,
# sum, mean, min, max, population stddev, p50/p95/p99 of latency_ms), timed as a whole
# process next to `processor run` on one core (both pinned with taskset) and on two. Never part of CI: it
# installs DuckDB from PyPI into a virtualenv of its own on the first run.
#
#   benches/peers/duckdb_q1.sh [EVENTS] [ROUNDS]      (defaults: 2000000 events, 5 rounds)
#
# Files go to $E2E_DIR (default /tmp/lop-e2e, shared with benches/e2e.sh, which makes the
# input file and the processor's configs; run it first). Needs python3-venv and taskset.
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-2000000}
rounds=${2:-5}
work=${E2E_DIR:-/tmp/lop-e2e}
venv=${DUCKDB_VENV:-$work/duckdb-venv}
input="$work/events-$events.jsonl"
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/processor"
[ -s "$input" ] || { echo "no $input: run benches/e2e.sh $events first" >&2; exit 1; }
[ -x "$bin" ] || { echo "no $bin: run benches/e2e.sh first" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q duckdb >&2
fi

cat > "$work/duckdb_q1.py" <<'PY'
import sys, duckdb
path, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"""
COPY (
  SELECT model, region,
         time_bucket(INTERVAL 1 minute, "timestamp") AS window_start,
         count(*) AS n, sum(latency_ms) AS total, avg(latency_ms) AS mean,
         min(latency_ms) AS lo, max(latency_ms) AS hi, stddev_pop(latency_ms) AS sd,
         quantile_disc(latency_ms, [0.5, 0.95, 0.99]) AS q
  FROM read_json('{path}', format = 'newline_delimited',
                 columns = {{'timestamp': 'TIMESTAMPTZ', 'model': 'VARCHAR',
                             'region': 'VARCHAR', 'latency_ms': 'DOUBLE'}})
  GROUP BY ALL
) TO '{out}' (FORMAT csv)
""")
PY

time_it() { # label command...
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/peer-time" "$@" >/dev/null 2>&1
    echo "$label $(cat "$work/peer-time")"
}
{
for r in $(seq "$rounds"); do
    # One core: both pinned to CPU 0 (the processor's decoders and run loop share it).
    time_it "duckdb-1core" taskset -c 0 "$venv/bin/python" "$work/duckdb_q1.py" "$input" 1 "$work/duckdb-q1.csv"
    rm -rf "$work/ckpt-q1-p1"
    time_it "processor-1core" taskset -c 0 "$bin" run --config "$work/q1-p1.yaml" --input "$input" --output "$work/peer-out-q1.jsonl"
    # Two threads each.
    time_it "duckdb-2threads" "$venv/bin/python" "$work/duckdb_q1.py" "$input" 2 "$work/duckdb-q1.csv"
    for p in 1 2; do
        rm -rf "$work/ckpt-q1-p$p"
        time_it "processor-p$p" "$bin" run --config "$work/q1-p$p.yaml" --input "$input" --output "$work/peer-out-q1.jsonl"
    done
done
} > "$work/peer-times"
echo "| what | cores | median wall s | events/s | peak RSS MB |"
echo "|---|---:|---:|---:|---:|"
for v in duckdb-1core processor-1core duckdb-2threads processor-p1 processor-p2; do
    s=$(grep "^$v " "$work/peer-times" | cut -d' ' -f2 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    kb=$(grep "^$v " "$work/peer-times" | cut -d' ' -f3 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    cores=2; case $v in *1core) cores=1 ;; esac
    echo "| $v | $cores | $s | $(awk -v n="$events" -v s="$s" 'BEGIN {printf "%.2fM", n / s / 1e6}') | $(awk -v k="$kb" 'BEGIN {printf "%.0f", k / 1024}') |"
done
echo
echo "DuckDB $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)'), $(wc -l < "$work/duckdb-q1.csv") rows; command: benches/peers/duckdb_q1.sh $events $rounds"
