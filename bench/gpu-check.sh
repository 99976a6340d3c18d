#!/usr/bin/env bash
# gpu-check.sh [REPORT.json]
#
# The GPU check of mdm-gpu. Runs on a machine with an NVIDIA GPU and its driver and nothing
# else (nvcc, python3 or torch are not needed), from the folder built elsewhere by
# bench/gpu-pack.sh (bin/, tests/, this script). In under 8 minutes it runs:
#
#   gpu-info      nvidia-smi summary
#   detect        the NVML probe of the CPU build (bin/mdm-detect)
#   handoff       the CPU build handing over to the CUDA build
#   cuda-tests    the GPU tests of the cuda-tagged test binaries (TestReal*, TestGPU*, TestCUDA*)
#   parity        the opstest parity suite, CPU reference vs the real GPU backend (-short cases)
#   train         a short training run of the owt-small shape on cuda:0 through the engine
#                 (TestRealTrainOWTSmall: tokens/s, MFU)
#   kernel-bench  BenchmarkRealOps (GB/s, TFLOP/s, % of the device's peak) and launch cost
#   other-tests   the other cuda-tagged test binaries (all their tests)
#   cli-bench     `mdm-gpu bench` when the CLI has it
#   cli-train     `mdm-gpu train --preset owt-small --device cuda` when the CLI can
#   parity-full   the whole parity table, Large cases included, with the time left
#
# Steps run in this order of importance; when the budget is spent the rest are skipped.
# Every step has a time limit and a failing step does not stop the others. It writes one
# JSON report (REPORT.json; default $OUT/gpu-check.json when $OUT is set, else
# ./gpu-check.json) with each step's status, time and output tail, and prints a short
# table last. Exit status: 0 when no step failed, 1 otherwise.
#
# Environment: MDM_PACK (the pack folder; default: this script's folder, or
# dist/gpu-check next to it), MDM_CHECK_BUDGET (seconds for all steps, default 450),
# MDM_CHECK_TRAIN_ARGS (extra arguments for the training run).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pack=${MDM_PACK:-$here}
if [ ! -d "$pack/bin" ] && [ -d "$here/../dist/gpu-check/bin" ]; then
  pack=$(cd "$here/../dist/gpu-check" && pwd)
fi
if [ -n "${1:-}" ]; then
  report=$1
elif [ -n "${OUT:-}" ]; then
  report=$OUT/gpu-check.json
else
  report=$PWD/gpu-check.json
fi
budget=${MDM_CHECK_BUDGET:-450}
t0=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -d "$pack/bin" ]; then
  echo "gpu-check: no pack at $pack (build it with bench/gpu-pack.sh, or set MDM_PACK)" >&2
  exit 2
fi

# Unpack (gzipped packs) or link the binaries into $work.
mkdir -p "$work/bin" "$work/tests"
for f in "$pack"/bin/* "$pack"/tests/*; do
  [ -f "$f" ] || continue
  sub=$(basename "$(dirname "$f")")
  case "$f" in
    *.gz) gzip -dc "$f" >"$work/$sub/$(basename "$f" .gz)" ;;
    *) cp "$f" "$work/$sub/" ;;
  esac
done
chmod +x "$work"/bin/* "$work"/tests/* 2>/dev/null
bin=$work/bin
tests=$work/tests
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}

# ---- bookkeeping --------------------------------------------------------------------

names=()
declare -A status secs rcs notes summaries logs

elapsed() { echo $(($(date +%s) - t0)); }

# record NAME STATUS SECONDS RC NOTE
record() {
  names+=("$1")
  status[$1]=$2
  secs[$1]=$3
  rcs[$1]=$4
  notes[$1]=$5
  summaries[$1]=${summaries[$1]:-}
}

skip() { record "$1" skip 0 "" "$2"; logs[$1]=""; }

# run NAME LIMIT NOTE CMD...: runs CMD with a time limit (cut to what is left of the
# budget); status pass (exit 0), fail, or timeout.
run() {
  local name=$1 limit=$2 note=$3
  shift 3
  local left=$((budget - $(elapsed)))
  if [ "$left" -lt 15 ]; then
    skip "$name" "not run: the ${budget}s budget is spent"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local log=$work/$name.log s rc st
  s=$(date +%s)
  echo "== $name (limit ${limit}s): $*" >&2
  timeout -k 10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  case $rc in
    0) st=pass ;;
    124 | 137) st=timeout; note="timed out after ${limit}s${note:+; $note}" ;;
    *) st=fail ;;
  esac
  logs[$name]=$log
  record "$name" "$st" $(($(date +%s) - s)) "$rc" "$note"
  tail -n 3 "$log" | sed 's/^/   /' >&2
  [ "$st" = pass ]
}

# json_str: stdin → a JSON string literal (control characters dropped, invalid UTF-8 fixed).
json_str() {
  local conv=cat
  command -v iconv >/dev/null && conv="iconv -c -f utf-8 -t utf-8"
  $conv | tr -d '\000-\010\013\014\016-\037' | awk 'BEGIN { ORS = ""; printf "\"" }
    { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r")
      if (NR > 1) printf "\\n"
      printf "%s", $0 }
    END { printf "\"" }'
}

tail_of() { [ -n "${1:-}" ] && [ -f "$1" ] && tail -n 60 "$1" | tail -c 6000; }

# ---- steps ----------------------------------------------------------------------------

if command -v nvidia-smi >/dev/null; then
  run gpu-info 20 "" nvidia-smi --query-gpu=index,name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.max.mem,pcie.link.gen.current --format=csv
  nvidia-smi -q -d CLOCK,POWER,PERFORMANCE >"$work/gpu-info-q.log" 2>&1 || true
  summaries[gpu-info]=$(sed -n 2p "$work/gpu-info.log" 2>/dev/null)
else
  skip gpu-info "nvidia-smi not found"
fi

if [ -x "$bin/mdm-detect" ]; then
  run detect 20 "" "$bin/mdm-detect" -json
  summaries[detect]=$("$bin/mdm-detect" 2>/dev/null)
else
  skip detect "bin/mdm-detect missing from the pack"
fi

if [ -x "$bin/mdm-gpu" ] && [ -x "$bin/mdm-gpu-cuda" ]; then
  run handoff 30 "" env MDM_HANDOFF_VERBOSE=1 "$bin/mdm-gpu" --help
  if grep -q "handing off to" "$work/handoff.log"; then
    summaries[handoff]="the CPU build handed over to the CUDA build"
  elif grep -q "hand-off:" "$work/handoff.log"; then
    summaries[handoff]=$(grep -m1 "hand-off:" "$work/handoff.log")
    [ "${status[handoff]}" = pass ] && status[handoff]=fail
  else
    summaries[handoff]="the CLI does not call detect.MaybeHandOff yet"
    [ "${status[handoff]}" = pass ] && status[handoff]=warn
  fi
else
  skip handoff "bin/mdm-gpu or bin/mdm-gpu-cuda missing"
fi

gotest_summary() { # LOG: "N passed, N failed, N skipped" from go test -v output
  local p f s
  p=$(grep -c -- '^ *--- PASS' "$1" 2>/dev/null)
  f=$(grep -c -- '^ *--- FAIL' "$1" 2>/dev/null)
  s=$(grep -c -- '^ *--- SKIP' "$1" 2>/dev/null)
  echo "${p:-0} passed, ${f:-0} failed, ${s:-0} skipped"
}

have_cuda_test=false
[ -x "$tests/cuda.test" ] && have_cuda_test=true

if $have_cuda_test; then
  run cuda-tests 100 "" "$tests/cuda.test" -test.v -test.timeout 95s \
    -test.run '^(TestReal|TestGPU|TestCUDA)' -test.skip '^(TestRealParity|TestRealTrainOWTSmall)$'
  summaries[cuda-tests]=$(gotest_summary "$work/cuda-tests.log")
  run parity 100 "-short cases" "$tests/cuda.test" -test.v -test.short -test.timeout 95s -test.run '^TestRealParity$'
  summaries[parity]=$(grep -m1 -Eo 'parity .* vs .*: [0-9]+ passed, [0-9]+ failed, [0-9]+ unsupported, [0-9]+ skipped' "$work/parity.log" ||
    gotest_summary "$work/parity.log")
  run train 120 "owt-small shape, random tokens, engine/train on cuda:0" "$tests/cuda.test" -test.v -test.timeout 115s \
    -test.run '^TestRealTrainOWTSmall$'
  summaries[train]=$(grep -m1 -o 'GPU-CHECK-TRAIN: .*' "$work/train.log" | sed 's/^GPU-CHECK-TRAIN: //')
  [ -z "${summaries[train]}" ] && summaries[train]=$(grep -m1 -E -- '--- (SKIP|FAIL)|skip|Error' "$work/train.log")
  run kernel-bench 90 "" "$tests/cuda.test" -test.run '^$' -test.bench '^(BenchmarkRealOps|BenchmarkRealLaunch)$' \
    -test.benchtime 20x -test.timeout 85s
  summaries[kernel-bench]="$(grep -c '^Benchmark' "$work/kernel-bench.log") benchmarks"
else
  for n in cuda-tests parity train kernel-bench; do skip "$n" "tests/cuda.test missing from the pack"; done
fi

others=()
for t in "$tests"/*.test; do
  [ -x "$t" ] && [ "$(basename "$t")" != cuda.test ] && others+=("$t")
done
if [ ${#others[@]} -gt 0 ]; then
  {
    echo '#!/usr/bin/env bash'
    echo 'rc=0'
    for t in "${others[@]}"; do
      echo "echo \"### $(basename "$t")\"; (cd \"$work\" && \"$t\" -test.v -test.timeout 55s) || rc=1"
    done
    echo "exit \$rc"
  } >"$work/others.sh"
  run other-tests 60 "$(basename -a "${others[@]}" | tr '\n' ' ')" bash "$work/others.sh"
  summaries[other-tests]=$(gotest_summary "$work/other-tests.log")
else
  skip other-tests "no other cuda-tagged test binaries"
fi

cuda_cli=$bin/mdm-gpu-cuda
if [ -x "$cuda_cli" ] && "$cuda_cli" bench --help >"$work/bench-help.log" 2>&1; then
  run cli-bench 45 "" "$cuda_cli" bench --device cuda
  summaries[cli-bench]=$(grep -m3 -Ei 'GB/s|TFLOP/s|tok/s|tokens/s|mfu' "$work/cli-bench.log" | tr '\n' ' ')
else
  skip cli-bench "this mdm-gpu has no 'bench' command"
fi

if [ -x "$cuda_cli" ] && "$cuda_cli" train --help >"$work/train-help.log" 2>&1; then
  # Synthetic text (the owt-small shape needs no real corpus for a throughput check).
  awk 'BEGIN { srand(7); split("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were", w, " ");
    for (i = 0; i < 400000; i++) { printf "%s%s", w[int(rand() * 30) + 1], (i % 17 == 16 ? ".\n" : " ") } }' >"$work/synthetic.txt"
  # shellcheck disable=SC2086 # MDM_CHECK_TRAIN_ARGS is split on purpose
  run cli-train 90 "owt-small shape, synthetic text" "$cuda_cli" train --preset owt-small --device cuda \
    --data "$work/synthetic.txt" --out "$work/run" --steps 30 ${MDM_CHECK_TRAIN_ARGS:-}
  tps=$(grep -Eio '[0-9][0-9.,]* ?(tok/s|tokens/s)' "$work/cli-train.log" | tail -1)
  mfu=$(grep -Eio 'mfu[^0-9]{0,3}[0-9.]+ ?%?' "$work/cli-train.log" | tail -1)
  summaries[cli-train]="${tps:-no tokens/s in the output}${mfu:+, $mfu}"
  # A CLI that cannot train this shape on cuda yet says so: a skip, not a failure.
  if [ "${status[cli-train]}" = fail ] &&
    unsup=$(grep -m1 -Ei 'not supported|not available|not implemented|unknown device|unsupported' "$work/cli-train.log"); then
    status[cli-train]=skip
    summaries[cli-train]="not supported by this mdm-gpu yet: $unsup"
  fi
else
  skip cli-train "this mdm-gpu has no 'train' command"
fi

if $have_cuda_test; then
  run parity-full 150 "all cases, Large included" "$tests/cuda.test" -test.v -test.run '^TestRealParity$'
  summaries[parity-full]=$(grep -m1 -Eo 'parity .* vs .*: [0-9]+ passed, [0-9]+ failed, [0-9]+ unsupported, [0-9]+ skipped' "$work/parity-full.log" ||
    gotest_summary "$work/parity-full.log")
fi

# A failed step whose summary says nothing gets the first error line of its output (e.g.
# gorgonia.org/cu's init failure on a machine without a usable GPU).
for n in "${names[@]}"; do
  if [ "${status[$n]}" != pass ] && [ -n "${logs[$n]:-}" ] &&
    { [ -z "${summaries[$n]:-}" ] || [[ ${summaries[$n]} == "0 passed, 0 failed"* ]] || [[ ${summaries[$n]} == "0 benchmarks" ]]; }; then
    e=$(grep -m1 -Ei 'error|fail|panic|not found' "${logs[$n]}")
    [ -n "$e" ] && summaries[$n]=$e
  fi
done

# ---- report ----------------------------------------------------------------------------

total=$(elapsed)
failed=0
{
  printf '{\n  "schema": "mdm-gpu/gpu-check/1",\n'
  printf '  "date": %s,\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ | json_str)"
  printf '  "host": %s,\n' "$(hostname 2>/dev/null | json_str)"
  printf '  "pack": %s,\n' "$(head -40 "$pack/MANIFEST" 2>/dev/null | json_str)"
  printf '  "nvidia_smi": %s,\n' "$(cat "$work/gpu-info.log" "$work/gpu-info-q.log" 2>/dev/null | head -120 | json_str)"
  printf '  "budget_seconds": %d,\n  "total_seconds": %d,\n  "steps": [\n' "$budget" "$total"
  sep=""
  for n in "${names[@]}"; do
    [ "${status[$n]}" = fail ] || [ "${status[$n]}" = timeout ] && failed=1
    printf '%s    {"name": %s, "status": %s, "seconds": %d, "exit": %s, "note": %s, "summary": %s, "output_tail": %s}' \
      "$sep" "$(printf %s "$n" | json_str)" "$(printf %s "${status[$n]}" | json_str)" "${secs[$n]}" \
      "${rcs[$n]:-null}" "$(printf %s "${notes[$n]}" | json_str)" "$(printf %s "${summaries[$n]}" | json_str)" \
      "$(tail_of "${logs[$n]:-}" | json_str)"
    sep=$',\n'
  done
  printf '\n  ],\n  "benchmarks": ['
  if [ -f "$work/kernel-bench.log" ]; then
    grep '^Benchmark' "$work/kernel-bench.log" | awk '
      function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
      { printf "%s\n    {\"name\": %s, \"iterations\": %s, \"metrics\": {", (NR > 1 ? "," : ""), q($1), ($2 ~ /^[0-9]+$/ ? $2 : "null")
        m = ""
        for (i = 3; i + 1 <= NF; i += 2) if ($i ~ /^[0-9.eE+-]+$/) { printf "%s%s: %s", m, q($(i + 1)), $i; m = ", " }
        printf "}}" }'
  fi
  printf '\n  ]\n}\n'
} >"$report.tmp" && mv "$report.tmp" "$report"

echo
echo "GPU check: ${summaries[gpu-info]:-no GPU information} — ${total}s — report: $report"
printf '%-13s %-8s %5s  %s\n' STEP STATUS SECS SUMMARY
for n in "${names[@]}"; do
  s=${summaries[$n]:-}
  [ -z "$s" ] && s=${notes[$n]}
  printf '%-13s %-8s %5s  %s\n' "$n" "${status[$n]}" "${secs[$n]}" "$(printf %s "$s" | cut -c1-100)"
done
exit $failed
