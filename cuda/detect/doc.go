// Package detect finds NVIDIA GPUs without linking the CUDA driver, and implements the
// "one mdm-gpu command that works everywhere" hand-off.
//
// # Why
//
// gorgonia.org/cu ends the process in its package init when there is no usable GPU
// (go-cuda-notes.md §1.2), so a binary that links it cannot decide for itself whether to
// use the GPU. mdm-gpu therefore ships as two binaries side by side:
//
//   - mdm-gpu: the default (CPU) build. It runs the CPU and simulated backends and links
//     no CUDA library. go-nvml dlopens libnvidia-ml.so.1 at run time, so this binary has
//     no NEEDED entry for NVML (checked by TestNoNVMLLinkDependency with readelf -d).
//   - mdm-gpu-cuda: the same command built with `-tags cuda` (kernels embedded, cu linked).
//
// # The hand-off
//
// The CLI calls MaybeHandOff(os.Args) first thing in main. In the CPU build it:
//
//  1. returns at once when MDM_NO_HANDOFF is set (non-empty, not 0/false), when
//     MDM_HANDED_OFF is set (loop guard: a hand-off already happened), or when the
//     arguments ask for --device cpu or sim;
//  2. probes the GPUs through NVML (Detect): every NVML call is gated on a successful
//     Init and on the presence of its symbol, NVML's own error strings are never called
//     (pitfalls.md B18), and CUDA_VISIBLE_DEVICES is honoured;
//  3. with at least one GPU visible and an executable mdm-gpu-cuda next to the running
//     executable (or at $MDM_CUDA_BINARY), replaces the process with it through
//     syscall.Exec: same arguments, same environment plus MDM_HANDED_OFF=1. It does not
//     return;
//  4. otherwise returns a Decision whose Reason is the one line the CLI logs when it
//     runs on the CPU ("no NVIDIA driver (libnvidia-ml.so.1 not found)", "found 1 GPU
//     (NVIDIA H200) but no CUDA build at /usr/local/bin/mdm-gpu-cuda", …).
//
// The CUDA build never hands off (MaybeHandOff returns immediately).
package detect
