//go:build !cuda

package cuda

import "fmt"

// CUDABuild reports whether this binary was built with the `cuda` tag (and can drive a GPU).
const CUDABuild = false

// NewRealDevice returns an error wrapping ErrNoCUDA: this binary was built without the
// `cuda` build tag. On a machine with a GPU, the mdm-gpu command hands over to the CUDA
// build (mdm-gpu-cuda) installed beside it (see package cuda/detect).
func NewRealDevice(ordinal int, opts ...RealOption) (Device, error) {
	return nil, fmt.Errorf("%w: this mdm-gpu binary was built without the cuda build tag (cuda:%d requested); "+
		"use the CUDA build (mdm-gpu-cuda, or the Docker image), or build one with "+
		"`cmake -S . -B build && cmake --build build && go build -tags cuda -o mdm-gpu-cuda ./cmd/mdm-gpu`", ErrNoCUDA, ordinal)
}

// New returns a Backend on GPU ordinal; in this build it always fails with ErrNoCUDA.
func New(ordinal int, opts ...Option) (*Backend, error) {
	_, err := NewRealDevice(ordinal)
	return nil, err
}
