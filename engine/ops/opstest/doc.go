// Package opstest is the parity harness of the backend contract (after ggml's
// test-backend-ops, in the style of testing/fstest.TestFS): one table of op cases, run on
// a reference backend and on a device under test, compared with dtype-dependent
// tolerances.
//
// # The table
//
// Cases returns every case. A case names itself from its parameters
// ("AttnFwd(b=2,l=97,h=4,dh=64,pad=yes,dt=f32)"), knows its op, its dtype (the one
// passed to Backend.Supports), its size class (Large cases are skipped with -short), its
// FLOPs and bytes moved (for benchmarks: Setup, Instance.Run, BenchCase), and builds its
// inputs deterministically from Philox addressed by a hash of its name. Shapes include
// odd sizes (1, 7, 97, 1025 rows and lengths, widths that are multiples of nothing),
// V = 27, 256 and 50257, attention head dims 64 and 128 plus a tiny odd one (7) that
// only the CPU is expected to support, key padding, all- and none-masked rows, R = 0
// rows, PUnmask 0 and 1, in-place and accumulating variants, and outputs pre-filled with
// NaN where the op must overwrite them without reading. Every op of ops.AllOps has
// cases; Coverage reports ops without one.
//
// # Checking
//
// Check (and Run, one subtest per case) uploads the same host inputs to both backends
// (accumulated outputs start from the same contents), runs the op, downloads and
// compares:
//
//   - F32: normalised MSE ≤ Tolerance.NMSE and |got−want| ≤ ATol + RTol·|want| per
//     element; tolerances widen like sqrt(k) for outputs that sum k terms.
//   - BF16: the FlashAttention rule. The reference runs twice on the bf16-rounded
//     inputs: in F64 (the oracle) and in F32 with its bf16 outputs rounded to bf16 (the
//     honest low-precision reference); the device's largest error against the oracle
//     must be at most 2× the honest reference's, plus 2^-16 of the output's scale (plus
//     the tiny F32 ATol, for outputs that vanish in exact arithmetic).
//   - Integer outputs, and cases marked Exact (copies, gathers, conversions), must match
//     bit for bit (any NaN matches any NaN).
//
// The device under test runs every case twice and must produce bit-identical outputs
// (unless the case is NonDeterministic), leave its read-only inputs untouched and return
// nil from Sync. A case it does not support (Supports false, or an error wrapping
// ops.ErrUnsupported) is reported as Unsupported, never as passed; FailUnsupported turns
// that into a failure. Failures name the case, the output, the worst element's index and
// both values. Options.RefDType = ops.F64 runs the F32 cases against a float64 reference.
//
// # Guard bands
//
// Tensors are opaque and have no offset views, so the harness cannot surround outputs
// with sentinels itself. A device that pads its allocations with canaries implements
// GuardChecker; with Options.Guard the harness calls CheckGuards after every upload and
// every run and fails the case on a damaged guard band (an out-of-bounds write).
//
// # Writing fault-injecting backends
//
// Intercept wraps a backend with a hook around every op; Null is a host-memory backend
// whose ops only validate. The tests of this package use both to prove that the harness
// fails on a perturbed output, a nondeterministic op, an out-of-bounds write, a modified
// input, a NaN, a panic or a Sync error.
package opstest
