// cudasim shim: kernels must not include <device_launch_parameters.h> (threadIdx & co are macros in the simulator build,
// and host API calls do not belong in kernels). Include "compat.cuh" first; see kernels/README.md.
#error "kernels must not include <device_launch_parameters.h>: include \"compat.cuh\" (and \"ptx.cuh\" for inline asm) instead"
