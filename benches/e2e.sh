#!/usr/bin/env bash
# End to end, as users run it: times the `processor` binary as a whole process on one
# generated file, for Q1–Q4 at parallelism 1, 2 and 4, next to the lean hand-written loop of
# ../shared/baselines/handrust (built in a scratch copy, never part of the project), rounds
# interleaved so that the machine's noise falls on every variant alike. Prints a Markdown
# table of medians (wall time, events/s, peak RSS) and the ratios of one sitting.
#
#   benches/e2e.sh [EVENTS] [ROUNDS]        (defaults: 2000000 events, 5 rounds)
#
# Needs /usr/bin/time (Debian package `time`). Files go to $E2E_DIR (default /tmp/lop-e2e).
# E2E_CARGO_FLAGS adds cargo flags to the build (`--no-default-features` leaves RocksDB and
# Kafka out: the configs below use the memory backend, so the run path is the same).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
rounds=${2:-5}
work=${E2E_DIR:-/tmp/lop-e2e}
mkdir -p "$work"
target=${CARGO_TARGET_DIR:-$PWD/target}

# shellcheck disable=SC2086
cargo build --release --locked ${E2E_CARGO_FLAGS:-} --bin processor >&2
bin="$target/release/processor"
input="$work/events-$events.jsonl"
[ -s "$input" ] || "$bin" generate --events "$events" --out "$input" >&2

hand=""
if [ -d ../shared/baselines/handrust ]; then
    rm -rf "$work/handrust-src" && cp -r ../shared/baselines/handrust "$work/handrust-src"
    (cd "$work/handrust-src" && CARGO_TARGET_DIR="$work/handrust-target" cargo build --release -q) >&2
    hand="$work/handrust-target/release/handrust"
fi

# One config per query: what `processor run` computes (checkpoints on, as by default).
config() { # name window keys measure stats parallelism
    cat > "$work/$1-p$6.yaml" <<EOF
processor:
  parallelism: $6
  checkpoint_interval_secs: 60
  state: { backend: memory, checkpoint_path: $work/ckpt-$1-p$6 }
  windows:
    default_type: $2
    tumbling: { size_secs: 60, allowed_lateness_secs: 60 }
    sliding: { size_secs: 300, slide_secs: 60, allowed_lateness_secs: 60 }
    session: { gap_secs: 30, allowed_lateness_secs: 60 }
  watermark: { max_out_of_orderness_secs: 30, emit_interval_secs: 0, max_future_skew_secs: 0 }
  aggregation: { enabled: [$5], percentiles: [50, 95, 99] }
  keys: [$3]
  measure: $4
EOF
}
all="count, sum, average, min, max, stddev, percentile"
variants=()
for p in 1 2 4; do
    config q1 tumbling "model, region" latency_ms "$all" $p
    config q2 sliding "model, region" latency_ms "$all" $p
    config q3 session "tenant, model" cost_usd "count, sum" $p
    config q4 tumbling "model, tenant" latency_ms "count, percentile" $p
    variants+=("q1-p$p" "q2-p$p" "q3-p$p" "q4-p$p")
done
[ -n "$hand" ] && variants+=("hand-q1")

run() { # variant → "seconds max_rss_kb"
    local v=$1 out="$work/out-$1.jsonl"
    rm -rf "$work/ckpt-${v}" "$out"
    if [ "$v" = hand-q1 ]; then
        /usr/bin/time -f "%e %M" -o "$work/time" "$hand" full-sketch "$input" >/dev/null 2>&1
    else
        /usr/bin/time -f "%e %M" -o "$work/time" "$bin" run --config "$work/$v.yaml" \
            --input "$input" --output "$out" >/dev/null 2>"$work/log-$v"
    fi
    tail -1 "$work/time"
}

declare -A times rss
for r in $(seq "$rounds"); do
    for v in "${variants[@]}"; do
        read -r s kb < <(run "$v")
        times[$v]+="$s "
        rss[$v]+="$kb "
        echo "round $r $v ${s}s ${kb}KB" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "| variant | median wall s | events/s | peak RSS MB | vs hand-written Q1 |"
echo "|---|---:|---:|---:|---:|"
hand_s=""
[ -n "$hand" ] && hand_s=$(echo "${times[hand-q1]}" | median)
for v in "${variants[@]}"; do
    s=$(echo "${times[$v]}" | median)
    kb=$(echo "${rss[$v]}" | median)
    eps=$(awk -v n="$events" -v s="$s" 'BEGIN {printf "%.2fM", n / s / 1e6}')
    ratio=""
    [ -n "$hand_s" ] && ratio=$(awk -v h="$hand_s" -v s="$s" 'BEGIN {printf "%.2f×", h / s}')
    echo "| $v | $s | $eps | $(awk -v k="$kb" 'BEGIN {printf "%.0f", k / 1024}') | $ratio |"
done
echo
# The rows of a query are the same at every parallelism (their order across keys aside).
for q in q1 q2 q3 q4; do
    sums=$(for p in 1 2 4; do sort "$work/out-$q-p$p.jsonl" | md5sum | cut -c1-32; done | sort -u | wc -l)
    rows=$(wc -l < "$work/out-$q-p1.jsonl")
    if [ "$sums" = 1 ]; then echo "$q: $rows rows, the same at parallelism 1, 2 and 4"; else echo "$q: ROWS DIFFER between parallelisms"; fi
done
echo
echo "$events events, $rounds rounds interleaved, $(nproc) cores; command: benches/e2e.sh $events $rounds"
