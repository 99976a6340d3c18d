// cudasim shim: fp16 (__half) is not provided by the simulator yet; our kernels store bf16.
#error "cudasim: <cuda_fp16.h> / __half is not supported by the simulator (kernels/README.md)"
