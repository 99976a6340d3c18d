// Package cuda is the GPU side of mdm-gpu: the Device interface (memory, copies, kernel
// launches by name, GEMM, synchronisation), its implementations, and Backend, the
// implementation of engine/ops on top of any Device.
//
// Two devices implement Device:
//
//   - the simulated device (NewSimDevice): runs the real kernels/*.cu sources compiled with
//     g++ by kernels/sim, on CPU threads and fibers, with GEMM done on the CPU. It needs no
//     GPU and no CUDA toolkit and is what `go test ./...` exercises.
//   - the real device (build tag `cuda`, issue 5): the same kernels compiled by nvcc into
//     fatbins and launched through gorgonia.org/cu, GEMM through cuBLAS loaded at run time.
//
// Every kernel has exactly one Go launcher (the <family>.go files): grid/block arithmetic,
// shape checks and argument packing are shared by both devices, so what the simulator
// tests is the code that drives the GPU (architecture.md §2).
//
// Kernel arguments are always pointers or scalars of at most 8 bytes, passed as raw 64-bit
// values (go-cuda-notes.md §1.6); see Arg.
package cuda
