// Test kernels of the real device's GPU tests (realdevice_gpu_test.go). Not part of the
// fatbins: the tests load them as PTX. Regenerate realdevice_ptx_test.go with
//   nvcc -ptx -arch=compute_80 -o - cuda/testdata/realdevice_test_kernels.cu
// (CUDA 11.8) and paste the output into the const there.

// Every argument kind a launcher passes: a pointer, a 64-bit int, a float, a 32-bit int,
// a double and a 64-bit unsigned, each through its 8-byte holder.
extern "C" __global__ void mdm_test_args(float *out, long long n, float a, int b, double c,
                                         unsigned long long d) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * (float)i + (float)b + (float)c + (float)(d & 0xff);
}

// Writes through p: with p = 8 it faults (an illegal address).
extern "C" __global__ void mdm_test_fault(int *p) { p[threadIdx.x] = 42; }

// Uses n floats of dynamic shared memory (more than 48 KB needs the opt-in) and writes
// their sequential float sum to out[0].
extern "C" __global__ void mdm_test_smem(float *out, int n) {
  extern __shared__ float s[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = (float)i;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int i = 0; i < n; i++) t += s[i];
    out[0] = t;
  }
}
