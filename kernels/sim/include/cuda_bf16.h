// cudasim shim for the toolkit's <cuda_bf16.h>: the simulator build puts kernels/sim/include ahead of
// the system include path, so a kernel that includes <cuda_bf16.h> gets kernels/sim/bf16.h even when a
// CUDA toolkit is installed in /usr/include. (compat.cuh already provides bf16; no need to include it.)
#pragma once
#include "../bf16.h"
