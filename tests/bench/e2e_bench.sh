#!/usr/bin/env bash
# End-to-end serving numbers on real model shapes (issue #16, docs/benchmarks.md "End to end on
# real shapes"): for each shape and weight precision, one kvserve on 127.0.0.1:0 and kvserve-bench
# over gRPC measuring
#   prefill   512-token prompts (511 random bytes + BOS), 1 output token, one at a time:
#             input tokens / duration (gRPC and per-request costs included);
#   decode    64-token prompts, 64 greedy output tokens (--temperature=0: sampling from the random
#             fixtures' nearly flat distributions would cost more than the model), closed loop at
#             1, 4, 16 and 64 streams:
#             output tok/s, TPOT and ITL percentiles.
# Prints one TSV row per point on stdout (and keeps each run's JSON in OUT_DIR), with the weight
# bytes one decode step streams (from the server's log) and, for decode rows, those bytes divided
# by the median TPOT (weight_GB/s). A STREAM-like read (batching_bench's BM_ReadBandwidth: 2
# threads summing 512 MiB) runs before and after each shape, as `read` rows, so each decode row
# has its roofline (read GB/s / weight bytes per token) measured in the same run.
#
#   tests/bench/e2e_bench.sh [BUILD_DIR] [--shapes=smollm-135m,llama-1b] [--dtypes=f32,bf16,int8]
#                            [--streams=1,4,16,64] [--out=build/bench/e2e]
#
# REQUIRES: BUILD_DIR/server/kvserve, BUILD_DIR/tools/bench/kvserve-bench and
# BUILD_DIR/tests/bench/batching_bench built; /usr/bin/python3
# with numpy. The checkpoints are the random-weight shape fixtures of
# tools/bench/shape_checkpoint.py (written into build/bench/SHAPE when missing: 0.27 GB and 2.5 GB).
# Each point runs 2 requests per stream, for at most DURATION seconds (default 180: at 64 streams
# of the Llama-1B shape a request takes over a minute).
# Not part of any test run; the machine must be otherwise idle for the numbers to mean anything.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
shapes=smollm-135m,llama-1b
dtypes=f32,bf16,int8
streams=1,4,16,64
out=$root/build/bench/e2e
for arg in "$@"; do
  case $arg in
    --shapes=*) shapes=${arg#*=} ;;
    --dtypes=*) dtypes=${arg#*=} ;;
    --streams=*) streams=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --*) echo "e2e_bench: unknown flag $arg" >&2; exit 2 ;;
    *) build=$(cd "$arg" && pwd) ;;
  esac
done
duration=${DURATION:-180}
mkdir -p "$out"
cd "$root"
server=""
trap '[[ -n "$server" ]] && kill "$server" 2>/dev/null || true' EXIT

# Prints the fields of a kvserve-bench --result-json file, tab-separated.
fields() {
  /usr/bin/python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("\t".join(str(round(d[k], 2)) if isinstance(d[k], float) else str(d[k]) for k in sys.argv[2:]))
PY
}

# Prints a `read` row: the STREAM-like read bandwidth in GB/s, median of 5 repetitions.
read_row() {
  local gbs
  gbs=$(OMP_WAIT_POLICY=PASSIVE "$build/tests/bench/batching_bench" \
    --benchmark_filter='BM_ReadBandwidth/before' --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true --benchmark_format=json 2>/dev/null |
    /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin)
print([round(b['read_GB/s'], 1) for b in d['benchmarks'] if b['aggregate_name']=='median'][0])")
  printf '%s\t-\tread-%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n' "$1" "$2" "$gbs"
}

printf 'shape\tdtype\tpoint\tstreams\tinput_tok_s\toutput_tok_s\tttft_p50_ms\ttpot_p50_ms\titl_p50_ms\titl_p99_ms\tweight_bytes\tweight_or_read_GB_s\n'
IFS=, read -ra shape_list <<<"$shapes"
IFS=, read -ra dtype_list <<<"$dtypes"
IFS=, read -ra stream_list <<<"$streams"
for shape in "${shape_list[@]}"; do
  dir=$root/build/bench/$shape
  [[ -f $dir/model.safetensors ]] ||
    /usr/bin/python3 -m tools.bench.shape_checkpoint --shape "$shape" --out "$dir" >&2
  read_row "$shape" before
  for dtype in "${dtype_list[@]}"; do
    log=$out/$shape.$dtype.server.log
    "$build/server/kvserve" --model="$shape=$dir" --weight-dtype="$dtype" --listen=127.0.0.1:0 \
      --metrics-address= --http-address= --max-num-seqs=64 2>"$log" &
    server=$!
    port=""
    for _ in $(seq 1200); do
      port=$(sed -n 's/.*kvserve listening on .*(port \([0-9]*\)).*/\1/p' "$log")
      [[ -n "$port" ]] && break
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    if [[ -z "$port" ]]; then
      echo "e2e_bench: kvserve did not start for $shape $dtype:" >&2
      cat "$log" >&2
      exit 1
    fi
    grep -o "model '.*" "$log" | head -1 >&2
    weight_bytes=$(sed -n 's/.*weights [0-9]* MiB (\([0-9]*\) bytes).*/\1/p' "$log" | head -1)
    bench=("$build/tools/bench/kvserve-bench" "--target=127.0.0.1:$port" --noprogress --seed=16
           --temperature=0
           "--duration=$duration")
    json=$out/$shape.$dtype.prefill.json
    "${bench[@]}" --input-len=511 --output-len=1 --num-requests=8 --max-concurrency=1 \
      --result-json="$json" >"$out/$shape.$dtype.prefill.txt"
    input=$(/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d['total_input_tokens']/d['duration'], 1))" "$json")
    printf '%s\t%s\tprefill-512\t1\t%s\t%s\t%s\t-\n' "$shape" "$dtype" "$input" \
      "$(fields "$json" output_throughput median_ttft_ms median_tpot_ms median_itl_ms p99_itl_ms)" \
      "$weight_bytes"
    for n in "${stream_list[@]}"; do
      json=$out/$shape.$dtype.decode.$n.json
      "${bench[@]}" --input-len=63 --output-len=64 --num-requests=$((2 * n)) --max-concurrency="$n" \
        --result-json="$json" >"$out/$shape.$dtype.decode.$n.txt"
      row=$(fields "$json" output_throughput median_ttft_ms median_tpot_ms median_itl_ms p99_itl_ms)
      tpot=$(cut -f3 <<<"$row")
      printf '%s\t%s\tdecode-64/64\t%s\t-\t%s\t%s\t%s\n' "$shape" "$dtype" "$n" "$row" \
        "$weight_bytes" "$(/usr/bin/python3 -c "print(round($weight_bytes / $tpot * 1e-6, 1))")"
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
  done
  read_row "$shape" after
done
