//go:build !cuda

package sched

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// NCCLAvailable reports whether this build can use NCCL (the `cuda` build tag).
const NCCLAvailable = false

// NCCLVersion fails in builds without the `cuda` tag.
func NCCLVersion() (int, error) { return 0, ErrNoNCCL }

// NCCLReducer fails in builds without the `cuda` tag; use the host-staged reduction (a nil
// Device.Reducer).
func NCCLReducer(be ops.Backend, c Comm) (GradReducer, error) {
	return nil, fmt.Errorf("%w: this binary was built without the cuda tag", ErrNoNCCL)
}
