package cuda

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// DevicePtr returns the device address of t's data, for libraries that take raw device
// pointers (NCCL's all-reduce of gradients in cuda/sched). t must belong to b.
func (b *Backend) DevicePtr(t *ops.Tensor) (Ptr, error) { return b.ptr(t) }
