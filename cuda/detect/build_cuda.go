//go:build cuda

package detect

// cudaBuild: this is the CUDA build, which never hands off.
const cudaBuild = true
