#!/usr/bin/env bash
# bench/gpu-pack.sh [OUTDIR]
#
# Builds, on a machine without a GPU (the CUDA 11.8 toolkit, Go and a C compiler are
# enough), everything bench/gpu-check.sh runs on a GPU machine, into one folder small enough
# to carry (< 60 MiB; default dist/gpu-check, gitignored):
#
#   bin/mdm-gpu          the CPU build (hands over to mdm-gpu-cuda when it finds a GPU)
#   bin/mdm-gpu-cuda     the CUDA build (-tags cuda, kernel fatbins embedded)
#   bin/mdm-detect       NVML probe (what the hand-off sees)
#   tests/*.test         `go test -c -tags cuda` binaries of ./cuda/... and of every package
#                        with cuda-tagged tests (the GPU tests, the parity suite, benchmarks)
#   gpu-check.sh         the check itself
#   MANIFEST             versions, sizes, kernels
#
# Binaries are stripped; when the folder is still over the limit they are gzipped
# (gpu-check.sh unpacks them). Then it prints how to run the check.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/dist/gpu-check}
limit=$((60 * 1024 * 1024))
jobs=$(nproc 2>/dev/null || echo 2)
export CGO_CFLAGS=${CGO_CFLAGS:-"-O2 -g -Wno-deprecated-declarations"}
ldflags="-s -w"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'gpu-pack: %s\n' "$*" >&2; exit 1; }

cd "$root"
command -v go >/dev/null || die "go not found"
command -v nvcc >/dev/null || die "nvcc not found (install the CUDA toolkit, e.g. Debian's nvidia-cuda-toolkit; see scripts/ci-cuda.sh)"

say "kernels: cmake -S . -B build && cmake --build build -j$jobs"
cmake -S . -B build >/dev/null
cmake --build build -j"$jobs"
shopt -s nullglob
fatbins=(cuda/kernelsbin/*.fatbin)
shopt -u nullglob
[ ${#fatbins[@]} -gt 0 ] || die "no fatbins in cuda/kernelsbin after cmake (no kernels/*.cu?)"

rm -rf "$out"
mkdir -p "$out/bin" "$out/tests"

say "binaries"
go build -trimpath -ldflags="$ldflags" -o "$out/bin/mdm-gpu" ./cmd/mdm-gpu
go build -trimpath -ldflags="$ldflags" -tags cuda -o "$out/bin/mdm-gpu-cuda" ./cmd/mdm-gpu
go build -trimpath -ldflags="$ldflags" -o "$out/bin/mdm-detect" ./cuda/detect/cmd/mdm-detect

say "link checks (readelf -d)"
if command -v readelf >/dev/null; then
  if readelf -d "$out/bin/mdm-gpu" | grep NEEDED | grep -Eq 'libcuda|libnvidia|libcublas'; then
    die "bin/mdm-gpu (the CPU build) links a CUDA/NVIDIA library: $(readelf -d "$out/bin/mdm-gpu" | grep NEEDED | tr -s ' ')"
  fi
  readelf -d "$out/bin/mdm-gpu-cuda" | grep -q 'NEEDED.*libcuda.so.1' ||
    echo "WARNING: bin/mdm-gpu-cuda does not link libcuda.so.1: the CLI does not use the real device yet"
  if readelf -d "$out/bin/mdm-gpu-cuda" | grep NEEDED | grep -Eq 'libcublas|libcudart|libnvidia-ml'; then
    die "bin/mdm-gpu-cuda links cuBLAS/cudart/NVML (they must be loaded at run time)"
  fi
  echo "mdm-gpu: $(readelf -d "$out/bin/mdm-gpu" | awk '/NEEDED/{gsub(/[][]/,"",$NF); printf "%s ", $NF}')"
  echo "mdm-gpu-cuda: $(readelf -d "$out/bin/mdm-gpu-cuda" | awk '/NEEDED/{gsub(/[][]/,"",$NF); printf "%s ", $NF}')"
else
  echo "readelf not installed: link checks skipped"
fi

say "test binaries (go test -c -tags cuda)"
# Packages under ./cuda/... with tests, plus every package with a cuda-tagged test file.
pkgs=$(
  {
    go list -tags cuda -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./cuda/...
    grep -rlE --include='*_test.go' '^//go:build (.*[ (])?cuda\b' . 2>/dev/null |
      grep -v '/dist/' | xargs -r -n1 dirname | sort -u |
      while read -r d; do go list -tags cuda "$d"; done
  } | sort -u
)
module=$(go list -m)
for p in $pkgs; do
  rel=${p#"$module"}
  rel=${rel#/}
  name=$(printf '%s' "${rel:-root}" | tr '/' '_')
  echo "$p -> tests/$name.test"
  go test -c -tags cuda -trimpath -ldflags="$ldflags" -o "$out/tests/$name.test" "$p"
done

cp bench/gpu-check.sh "$out/gpu-check.sh"
chmod +x "$out/gpu-check.sh"

say "manifest"
{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "go: $(go version)"
  echo "nvcc: $(nvcc --version | tail -1)"
  echo "fatbins:"
  for f in "${fatbins[@]}"; do echo "  $(basename "$f") $(stat -c %s "$f")"; done
  echo "files:"
  (cd "$out" && find . -type f ! -name MANIFEST -printf '  %P %s\n' | sort)
} >"$out/MANIFEST"

size=$(du -sb "$out" | cut -f1)
if [ "$size" -gt "$limit" ]; then
  say "$((size / 1048576)) MiB is over the limit: gzipping the binaries"
  find "$out/bin" "$out/tests" -type f ! -name '*.gz' -exec gzip -9 {} +
  size=$(du -sb "$out" | cut -f1)
  echo "compressed: binaries are *.gz, gpu-check.sh unpacks them" >>"$out/MANIFEST"
fi
cat "$out/MANIFEST"
[ "$size" -le "$limit" ] || die "$out is $((size / 1048576)) MiB, over the 60 MiB limit"

say "done: $out ($((size / 1048576)) MiB, $size bytes)"
cat <<EOF
Run the check on a machine with an NVIDIA GPU and driver (nothing else needed):

  bash $(realpath --relative-to="$root" "$out" 2>/dev/null || echo "$out")/gpu-check.sh [REPORT.json]

It writes one JSON report (default \$OUT/gpu-check.json when \$OUT is set, else
./gpu-check.json) and prints a table last. With the device tool, carry the folder:
  run(command="bash dist/gpu-check/gpu-check.sh \$OUT/gpu-check.json", carry=["dist/gpu-check"])
EOF
