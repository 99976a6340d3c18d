# syntax=docker/dockerfile:1
#
# mdm-gpu container image: the CPU build (mdm-gpu) and the CUDA build (mdm-gpu-cuda) side by
# side on a slim CUDA 11.8 runtime image (it carries cuBLAS; the NVIDIA driver comes from the
# host through the NVIDIA Container Toolkit). The entrypoint is the CPU build: it finds the
# GPUs through NVML and hands over to mdm-gpu-cuda when there is one (package cuda/detect),
# and otherwise runs on the CPU after one line saying why.
#
# Build (no GPU needed):
#   docker build -t mdm-gpu .
#
# Run:
#   # on all GPUs (needs the NVIDIA Container Toolkit on the host)
#   docker run --rm --gpus all -v "$PWD/runs:/work/runs" -v "$PWD/data:/work/data" mdm-gpu \
#       train --preset tiny --data /work/data/corpus.txt --out /work/runs/demo --device cuda
#   # on one GPU
#   docker run --rm --gpus '"device=1"' -v "$PWD/runs:/work/runs" mdm-gpu \
#       sample --checkpoint /work/runs/demo/checkpoint.safetensors --num 4
#   # what the container sees
#   docker run --rm --gpus all --entrypoint mdm-detect mdm-gpu
#   # without --gpus the same commands run on the CPU
#   docker run --rm -v "$PWD/runs:/work/runs" mdm-gpu train --preset tiny --device cpu ...
#
# The container runs as the unprivileged user mdm (uid 10001): mounted folders must be
# writable by it (e.g. `mkdir -p runs && chmod 777 runs`, or `--user "$(id -u):$(id -g)"`).
# MDM_NO_HANDOFF=1 keeps a run on the CPU; MDM_CUDA_SYNC=1 synchronises after every kernel
# (debugging); MDM_CUDA_TF32=1 lets fp32 GEMMs use TF32.

ARG GO_VERSION=1.26.8
ARG CMAKE_VERSION=3.27.9

# The Go toolchain, taken from the official Go image (statically linked, runs on Ubuntu).
FROM golang:${GO_VERSION}-bookworm AS go

# ---- build: kernels (nvcc 11.8, sm_90 + sm_80 SASS, compute_80 PTX) and the binaries ----
FROM nvidia/cuda:11.8.0-devel-ubuntu22.04 AS build
ARG CMAKE_VERSION
# Ubuntu 22.04's cmake is 3.22; CMakeLists.txt needs 3.25, so cmake comes from PyPI, pinned.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates g++ git python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && pip3 install --no-cache-dir "cmake==${CMAKE_VERSION}"
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:${PATH} \
    CGO_ENABLED=1 \
    GOFLAGS=-trimpath \
    CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" \
    CGO_LDFLAGS="-L/usr/local/cuda/lib64/stubs"
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN cmake -S . -B build \
    && cmake --build build -j"$(nproc)" \
    && ls cuda/kernelsbin/*.fatbin
RUN mkdir -p /out \
    && go build -ldflags="-s -w" -o /out/mdm-gpu ./cmd/mdm-gpu \
    && go build -ldflags="-s -w" -tags cuda -o /out/mdm-gpu-cuda ./cmd/mdm-gpu \
    && go build -ldflags="-s -w" -o /out/mdm-detect ./cuda/detect/cmd/mdm-detect

# ---- run: CUDA 11.8 runtime (cuBLAS included) ----
FROM nvidia/cuda:11.8.0-runtime-ubuntu22.04
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin mdm \
    && mkdir -p /work \
    && chown mdm:mdm /work
COPY --from=build /out/mdm-gpu /out/mdm-gpu-cuda /out/mdm-detect /usr/local/bin/
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER mdm
WORKDIR /work
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/mdm-gpu"]
CMD ["--help"]
