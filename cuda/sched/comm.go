package sched

import (
	"errors"
	"fmt"
	"math/bits"
	"unsafe"
)

// ReduceOp is the reduction of an all-reduce.
type ReduceOp uint8

// Reductions.
const (
	Sum  ReduceOp = iota + 1 // element-wise sum over ranks
	Mean                     // the sum divided by the number of ranks
)

func (o ReduceOp) String() string {
	switch o {
	case Sum:
		return "sum"
	case Mean:
		return "mean"
	}
	return fmt.Sprintf("ReduceOp(%d)", uint8(o))
}

// Comm is a communicator over Size() ranks (one per device of the job), each calling the
// same collectives in the same order. Buffers are host memory.
//
// Every implementation in this package reduces in a fixed order that does not depend on
// timing: the result of element i is the left-packed binary tree over the ranks' values in
// rank order (TreeSum), so repeated runs are bit-identical and the in-process and TCP
// communicators agree bit for bit. Every rank receives the same bytes.
//
// A Comm is used by one goroutine at a time (its rank's device goroutine).
type Comm interface {
	// Rank is this member's rank in [0, Size()).
	Rank() int
	// Size is the number of ranks.
	Size() int
	// AllReduce replaces buf ([]float32 or []float64, of the same length and type on every
	// rank) by the element-wise reduction over all ranks.
	AllReduce(buf any, op ReduceOp) error
	// Broadcast copies root's buf ([]byte, []int32, []float32 or []float64, same length and
	// type on every rank) into every rank's buf.
	Broadcast(buf any, root int) error
	// Barrier returns when every rank has entered it.
	Barrier() error
	// Abort fails every pending and later collective of every rank with err (as far as the
	// implementation can reach them), so that no rank waits for a member that will never
	// come. It is safe to call from any goroutine.
	Abort(err error)
	// Close releases the communicator.
	Close() error
}

// ErrAborted is wrapped by the errors of collectives that fail because a member aborted
// the group, timed out or went away.
var ErrAborted = errors.New("sched: communicator aborted")

// largestPow2Below returns the largest power of two strictly below n (n ≥ 2).
func largestPow2Below(n int) int {
	return 1 << (bits.Len(uint(n-1)) - 1)
}

// TreeSum sets dst[i] to the sum of src[r][i] over r, added as a left-packed binary tree in
// rank order: tree(r0, n) = tree(r0, p) + tree(r0+p, n−p) with p the largest power of two
// below n. This is the one reduction order of the package. It has a property the scheduler
// relies on: when every rank holds the tree-sum of A consecutive micro-batch gradients and
// A is a power of two, the tree over the ranks is the tree over all D·A micro-batches, so a
// global batch split as D devices × A accumulation steps gives bit-identical gradients for
// every D (pitfalls B11). dst may alias one of the sources. It panics if lengths differ.
func TreeSum[T float32 | float64](dst []T, src [][]T) {
	n := len(dst)
	for _, s := range src {
		if len(s) != n {
			panic(fmt.Sprintf("sched: TreeSum: source of %d elements for a destination of %d", len(s), n))
		}
	}
	if len(src) == 0 {
		clear(dst)
		return
	}
	const chunk = 4096
	depth := bits.Len(uint(len(src))) + 1
	tmp := make([][]T, depth)
	for i := range tmp {
		tmp[i] = make([]T, min(chunk, n))
	}
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		out := tmp[0][:hi-lo]
		treeChunk(out, src, 0, len(src), lo, hi, tmp[1:])
		copy(dst[lo:hi], out)
	}
}

// treeChunk writes tree(r0, n) of elements [lo, hi) into out, using scratch[k] for the
// right subtrees at recursion depth k.
func treeChunk[T float32 | float64](out []T, src [][]T, r0, n, lo, hi int, scratch [][]T) {
	if n == 1 {
		copy(out, src[r0][lo:hi])
		return
	}
	p := largestPow2Below(n)
	treeChunk(out, src, r0, p, lo, hi, scratch[1:])
	right := scratch[0][:hi-lo]
	treeChunk(right, src, r0+p, n-p, lo, hi, scratch[1:])
	for i := range out {
		out[i] += right[i]
	}
}

// scaleMean divides buf by n (the Mean reduction after a Sum).
func scaleMean(buf any, n int) {
	switch b := buf.(type) {
	case []float32:
		d := float32(n)
		for i := range b {
			b[i] /= d
		}
	case []float64:
		d := float64(n)
		for i := range b {
			b[i] /= d
		}
	}
}

// bufKind describes a collective buffer: its element type code, length and raw bytes.
type bufKind struct {
	code  byte // 1 byte, 2 int32, 3 float32, 4 float64
	n     int
	bytes []byte
}

func (k bufKind) typeName() string {
	switch k.code {
	case 1:
		return "[]byte"
	case 2:
		return "[]int32"
	case 3:
		return "[]float32"
	case 4:
		return "[]float64"
	}
	return "?"
}

// describe classifies a collective buffer; floatOnly restricts it to []float32/[]float64.
func describe(buf any, floatOnly bool) (bufKind, error) {
	var k bufKind
	switch b := buf.(type) {
	case []float32:
		k = bufKind{code: 3, n: len(b)}
		if len(b) > 0 {
			k.bytes = unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 4*len(b))
		}
	case []float64:
		k = bufKind{code: 4, n: len(b)}
		if len(b) > 0 {
			k.bytes = unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 8*len(b))
		}
	case []int32:
		if floatOnly {
			return k, fmt.Errorf("sched: all-reduce of %T: only []float32 and []float64 can be reduced", buf)
		}
		k = bufKind{code: 2, n: len(b)}
		if len(b) > 0 {
			k.bytes = unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 4*len(b))
		}
	case []byte:
		if floatOnly {
			return k, fmt.Errorf("sched: all-reduce of %T: only []float32 and []float64 can be reduced", buf)
		}
		k = bufKind{code: 1, n: len(b), bytes: b}
	default:
		return k, fmt.Errorf("sched: unsupported collective buffer %T (use []float32, []float64, []int32 or []byte)", buf)
	}
	return k, nil
}

func checkOp(op ReduceOp) error {
	if op != Sum && op != Mean {
		return fmt.Errorf("sched: unknown reduction %v", op)
	}
	return nil
}

// ErrNoNCCL is wrapped by the errors of NCCLReducer when NCCL cannot be used (a build
// without the `cuda` tag, or libnccl.so.2 missing): fall back to the host-staged
// reduction over the Comm.
var ErrNoNCCL = errors.New("sched: NCCL unavailable")
