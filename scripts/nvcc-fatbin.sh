#!/usr/bin/env bash
# nvcc-fatbin.sh NVCC SRC OUT REPORT FLAGS...: compile one kernel family into a fatbin and
# keep nvcc's stderr (the -Xptxas -v resource report) in REPORT. Called by CMakeLists.txt.
set -euo pipefail
nvcc=$1 src=$2 out=$3 report=$4
shift 4
if ! "$nvcc" --fatbin "$@" -I"$(dirname "$src")" -o "$out" "$src" 2>"$report"; then
  cat "$report" >&2
  exit 1
fi
