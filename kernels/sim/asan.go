//go:build asan

package sim

// `go test -asan` adds -fsanitize=address to the cgo C flags only, not to CXXFLAGS, which would leave
// the kernels and the simulator (all C++) uninstrumented. This file, built only under -asan, adds it.
// Frame pointers keep ASan's fast unwinder working across the fiber stacks.

// #cgo CXXFLAGS: -fsanitize=address -fno-omit-frame-pointer
import "C"
