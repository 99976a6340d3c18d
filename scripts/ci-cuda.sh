#!/usr/bin/env bash
# scripts/ci-cuda.sh: the CUDA part of CI, for a machine without a GPU (called from .ci/run).
#
#   1. installs Debian's nvidia-cuda-toolkit (nvcc 11.8, headers, libcuda.so) and cmake when
#      nvcc is missing, enabling the contrib and non-free components idempotently;
#   2. builds the kernel fatbins (sm_90 + sm_80 SASS, compute_80 PTX) with cmake and checks
#      the register-spill budget (internal/tools/ptxasreport);
#   3. go vet -tags cuda ./... and go build -tags cuda ./... (links against the driver
#      library or stub libcuda.so; nothing is run);
#   4. compiles every -tags cuda test binary (they cannot run without a GPU: gorgonia.org/cu
#      exits in its init there; bench/gpu-check.sh runs them on a GPU machine);
#   5. checks the link dependencies: the CPU build links no CUDA/NVIDIA library, the CUDA
#      build links libcuda.so.1 but not cuBLAS, cudart or NVML (those are loaded at run time).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n== ci-cuda: %s\n' "$*"; }
export CGO_CFLAGS=${CGO_CFLAGS:-"-O2 -g -Wno-deprecated-declarations"}
jobs=$(nproc 2>/dev/null || echo 2)

# --- 1. toolkit ------------------------------------------------------------------------
enable_nonfree() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ]; then
    # deb822: every Components line gets contrib and non-free (once).
    for c in contrib non-free; do
      grep -qE "^Components:.*[[:space:]]$c([[:space:]]|\$)" "$f" || sed -i -E "s/^(Components:.*)\$/\\1 $c/" "$f"
    done
  elif [ -f /etc/apt/sources.list ]; then
    sed -i -E '/^deb /{/[[:space:]]contrib([[:space:]]|$)/!s/$/ contrib/}' /etc/apt/sources.list
    sed -i -E '/^deb /{/[[:space:]]non-free([[:space:]]|$)/!s/$/ non-free/}' /etc/apt/sources.list
  fi
}
if ! command -v nvcc >/dev/null || ! command -v cmake >/dev/null; then
  step "installing nvidia-cuda-toolkit and cmake"
  if [ "$(id -u)" -ne 0 ]; then
    echo "ci-cuda: nvcc/cmake missing and not root: install nvidia-cuda-toolkit and cmake first" >&2
    exit 1
  fi
  enable_nonfree
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit cmake >/dev/null
fi
nvcc --version | tail -1

# --- 2. kernels --------------------------------------------------------------------------
step "cmake -S . -B build && cmake --build build -j$jobs"
cmake -S . -B build >/dev/null
cmake --build build -j"$jobs"
shopt -s nullglob
reports=(build/ptxas/*.txt)
shopt -u nullglob
if [ ${#reports[@]} -gt 0 ]; then
  step "register spills (ptxasreport)"
  go run ./internal/tools/ptxasreport -budget kernels/spill-budget.txt -o build/ptxas-table.md "${reports[@]}"
else
  echo "no kernels/*.cu yet: no ptxas reports"
fi

# --- 3. vet and build with the cuda tag ---------------------------------------------------
step "go vet -tags cuda ./..."
go vet -tags cuda ./...
step "go build -tags cuda ./..."
go build -tags cuda ./...

# --- 4. cuda-tagged test binaries -----------------------------------------------------------
step "compiling the -tags cuda test binaries"
tdir=$(mktemp -d)
trap 'rm -rf "$tdir"' EXIT
module=$(go list -m)
count=0
for p in $(go list -tags cuda -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do
  rel=${p#"$module"}
  rel=${rel#/}
  name=$(printf '%s' "${rel:-root}" | tr '/' '_')
  go test -tags cuda -c -o "$tdir/$name.test" "$p"
  count=$((count + 1))
done
echo "$count test binaries compiled"


# --- 5. link dependencies ----------------------------------------------------------------
step "link dependencies (readelf -d)"
go build -o "$tdir/mdm-gpu" ./cmd/mdm-gpu
go build -tags cuda -o "$tdir/mdm-gpu-cuda" ./cmd/mdm-gpu
go build -o "$tdir/mdm-detect" ./cuda/detect/cmd/mdm-detect
needed() { readelf -d "$1" | awk '/NEEDED/ { gsub(/[][]/, "", $NF); printf "%s ", $NF }'; }
for b in mdm-gpu mdm-detect; do
  n=$(needed "$tdir/$b")
  echo "$b: $n"
  case "$n" in *libcuda*|*libnvidia*|*libcublas*)
    echo "ci-cuda: the CPU build $b links a CUDA/NVIDIA library" >&2; exit 1 ;;
  esac
done
n=$(needed "$tdir/mdm-gpu-cuda")
echo "mdm-gpu-cuda: $n"
case "$n" in *libcublas*|*libcudart*|*libnvidia-ml*)
  echo "ci-cuda: mdm-gpu-cuda links cuBLAS/cudart/NVML; they must be loaded at run time" >&2; exit 1 ;;
esac
n=$(needed "$tdir/cuda.test")
case "$n" in *libcuda.so.1*) ;; *)
  echo "ci-cuda: cuda.test (-tags cuda) does not link libcuda.so.1" >&2; exit 1 ;;
esac
step "ok"
