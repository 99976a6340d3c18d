// Package sim runs the project's CUDA kernels (kernels/*.cu) on the CPU, with CUDA semantics, so that
// every kernel can be tested against the Go reference on machines with no GPU and no CUDA toolkit.
//
// The same .cu sources that nvcc builds for the GPU are compiled here by g++ (through cgo) against a
// small simulator (cudasim.h, runtime.cpp): each block runs on a worker OS thread, each CUDA thread is
// a fiber with its own stack, and fibers switch only at __syncthreads and warp collectives (shuffles,
// votes, mma.sync, ldmatrix). Kernel bugs — divergent barriers, deadlocks, bad shuffle masks, __trap,
// device assert, misaligned atomics — come back from Launch as a *Fault naming the kernel, block,
// thread and file:line; they never crash the test binary. Memory errors (out-of-bounds accesses) are
// found by running the tests under AddressSanitizer: go test -asan ./kernels/sim/...
//
// Memory handed to kernels is simulated device memory on the C heap (Alloc, CopyIn, CopyOut, Free),
// never Go memory. Kernel arguments are raw 8-byte values (pointers, integers, float bits), as with
// cuLaunchKernel.
//
// Adding a kernel: write it in kernels/<family>.cu (see kernels/README.md for the contract), then run
//
//	go generate ./kernels/sim
//
// which (re)writes the registration file k_<family>.cpp. A test fails while that file is stale.
//
// Design notes: docs/cudasim.md; kernel contract and limits: kernels/README.md.
package sim

//go:generate go run ./internal/gen
