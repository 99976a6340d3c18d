//go:build !cuda

package detect

// cudaBuild: this is the CPU build, which may hand off to the CUDA build.
const cudaBuild = false
