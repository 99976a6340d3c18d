package cpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"strconv"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Backend is the CPU reference backend: an ops.Device over Go slices plus every op of
// the contract. Create it with New. It is not safe for concurrent use (like every
// ops.Device); its ops use a private pool of worker goroutines.
type Backend struct {
	pool *pool

	// parMin is the least work (in elements) worth a chunk of its own. Row-local ops
	// split their rows into chunks of about this much work; tests lower it so that tiny
	// shapes exercise the parallel paths. It never changes a result.
	parMin int

	// jobs caches one job struct per (op, dtype), so that dispatching work to the pool
	// does not allocate (see getJob).
	jobs [numJobSlots][2]any

	// Reusable scratch owned by the calling goroutine (not by workers).
	stamp    []uint32 // duplicate detection for Rows (ScatterRows, SampleStep)
	stampGen uint32
	idCount  []int32   // EmbedBwd counting sort: offsets per id
	idOrder  []int32   // EmbedBwd counting sort: row indices grouped by id
	partials []float64 // SumSquares chunk partials
	tokens   []int32   // SampleStep draws before they are committed
	rowErr   []int32   // SampleStep per-row failure codes
	genStats []float64 // GenMaskedCE per-row statistics between its passes
	rope     ropeTable
	conv     convJob
	mask     maskJob
}

// Option configures New.
type Option func(*Backend)

// WithWorkers sets the number of goroutines that compute ops (the calling goroutine
// included). n ≤ 0 means runtime.GOMAXPROCS(0), the default. Results do not depend on n.
func WithWorkers(n int) Option {
	return func(b *Backend) {
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		b.pool = newPool(n)
	}
}

// defaultParMin is the default least chunk work, in elements.
const defaultParMin = 1 << 14

// New returns a CPU backend. The worker goroutines start on the first op that splits
// its work and stop when the Backend becomes unreachable (or at Close).
func New(opts ...Option) *Backend {
	b := &Backend{parMin: defaultParMin}
	for _, o := range opts {
		o(b)
	}
	if b.pool == nil {
		b.pool = newPool(runtime.GOMAXPROCS(0))
	}
	runtime.AddCleanup(b, func(p *pool) { p.stop() }, b.pool)
	return b
}

// BLAS names the GEMM behind MatMul: "go-avx2" (the default pure-Go build on CPUs with
// AVX2 and FMA: float32 products through the assembly micro-kernel of sgemm.go, float64
// through gonum), "gonum" (the pure-Go build elsewhere) or "openblas" (builds with the
// openblas and cgo tags).
func (b *Backend) BLAS() string {
	if blasName == "gonum" && vecF32[float32]() {
		return "go-avx2"
	}
	return blasName
}

// Workers returns the number of goroutines that compute ops.
func (b *Backend) Workers() int { return b.pool.n }

// Close stops the worker goroutines. The Backend must not be used afterwards. Calling it
// is optional: the workers also stop once the Backend is garbage.
func (b *Backend) Close() { b.pool.stop() }

var _ ops.Backend = (*Backend)(nil)

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Sync returns nil: every CPU op has completed when it returns.
func (b *Backend) Sync() error { return nil }

// Supports reports F32 and F64 for every op, and BF16 for Convert only.
func (b *Backend) Supports(op ops.Op, dt ops.DType) bool {
	if op < ops.OpMatMul || op > ops.OpGenMaskedCE {
		return false
	}
	switch dt {
	case ops.F32, ops.F64:
		return true
	case ops.BF16:
		return op == ops.OpConvert
	}
	return false
}

// bigAlloc is the size above which Alloc compares the request with the available memory
// first (Go cannot recover from an allocation failure).
const bigAlloc = 64 << 20

// Alloc returns a new zero-filled tensor with storage of exactly Len elements.
func (b *Backend) Alloc(dt ops.DType, shape ...int) (*ops.Tensor, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("cpu: Alloc %v%v: %w: negative dimension", dt, shape, ops.ErrShape)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > 1<<50 {
			return nil, fmt.Errorf("cpu: Alloc %v%v: %w: too many elements", dt, shape, ops.ErrShape)
		}
		n = int(lo)
	}
	size := dt.Size()
	if size == 0 {
		return nil, fmt.Errorf("cpu: Alloc: %w: invalid dtype %v", ops.ErrDType, dt)
	}
	if req := int64(n) * int64(size); req > bigAlloc {
		if free, _, err := b.MemInfo(); err == nil && req > free {
			return nil, fmt.Errorf("cpu: Alloc %v%v: out of memory: %d bytes requested, %d bytes free", dt, shape, req, free)
		}
	}
	// The storage gets one spare element of capacity: a tensor from Alloc has cap > len,
	// while a View's storage is a full slice expression with cap == len. Free uses this to
	// refuse views without keeping a registry.
	var st any
	switch dt {
	case ops.F32:
		st = make([]float32, n, n+1)
	case ops.F64:
		st = make([]float64, n, n+1)
	case ops.I32:
		st = make([]int32, n, n+1)
	case ops.BF16:
		st = make([]uint16, n, n+1)
	}
	return ops.NewTensor(b, dt, shape, st)
}

// View returns a tensor sharing t's storage that covers rows [start, end) of t's first
// dimension. Writes through the view are writes to t. A view cannot be freed.
func (b *Backend) View(t *ops.Tensor, start, end int) (*ops.Tensor, error) {
	if t == nil {
		return nil, fmt.Errorf("cpu: View of a nil tensor: %w", ops.ErrValue)
	}
	if t.Storage == nil {
		return nil, fmt.Errorf("cpu: View of %v: %w: %w", t, ops.ErrValue, errFreed)
	}
	if err := storageOK(t); err != nil {
		return nil, fmt.Errorf("cpu: View of %v: %w", t, err)
	}
	if start < 0 || end < start || end > t.Dim(0) {
		return nil, fmt.Errorf("cpu: View rows [%d, %d) of %v: %w: out of range [0, %d]", start, end, t, ops.ErrShape, t.Dim(0))
	}
	row := 0
	if t.Dim(0) > 0 {
		row = t.Len() / t.Dim(0)
	}
	lo, hi := start*row, end*row
	var st any
	switch s := t.Storage.(type) {
	case []float32:
		st = s[lo:hi:hi]
	case []float64:
		st = s[lo:hi:hi]
	case []int32:
		st = s[lo:hi:hi]
	case []uint16:
		st = s[lo:hi:hi]
	}
	shape := t.Shape()
	shape[0] = end - start
	v, err := ops.NewTensor(b, t.DType(), shape, st)
	if err != nil {
		return nil, err
	}
	v.Name = t.Name
	return v, nil
}

// isView reports whether storage comes from View (see Alloc).
func isView(s any) bool {
	switch s := s.(type) {
	case []float32:
		return cap(s) == len(s)
	case []float64:
		return cap(s) == len(s)
	case []int32:
		return cap(s) == len(s)
	case []uint16:
		return cap(s) == len(s)
	}
	return false
}

// errFreed is the cause of using a tensor after Free.
var errFreed = errors.New("tensor was freed")

// Free releases t's storage; using t afterwards is an error. Handles made by Reshape
// before the call keep their own reference to the storage.
func (b *Backend) Free(t *ops.Tensor) error {
	if t == nil {
		return fmt.Errorf("cpu: Free: %w: nil tensor", ops.ErrValue)
	}
	if t.Storage == nil {
		return fmt.Errorf("cpu: Free %v: %w: %w (double free?)", t, ops.ErrValue, errFreed)
	}
	if !isCPUStorage(t.Storage) {
		return fmt.Errorf("cpu: Free %v: %w: storage %T is not a CPU backend's", t, ops.ErrValue, t.Storage)
	}
	if isView(t.Storage) {
		return fmt.Errorf("cpu: Free %v: %w: it is a view (or its storage was not made by Alloc); free the tensor it was taken from", t, ops.ErrValue)
	}
	t.Storage = nil
	return nil
}

func isCPUStorage(s any) bool {
	switch s.(type) {
	case []float32, []float64, []int32, []uint16:
		return true
	}
	return false
}

// Upload copies src (a []float32, []uint16, []float64 or []int32 matching dst's dtype,
// of exactly dst.Len() elements) into dst.
func (b *Backend) Upload(dst *ops.Tensor, src any) error {
	if err := checkHost("Upload to", dst, src); err != nil {
		return err
	}
	switch s := src.(type) {
	case []float32:
		copy(dst.Storage.([]float32), s)
	case []float64:
		copy(dst.Storage.([]float64), s)
	case []int32:
		copy(dst.Storage.([]int32), s)
	case []uint16:
		copy(dst.Storage.([]uint16), s)
	}
	return nil
}

// Download copies src into the host slice dst, with the typing rules of Upload.
func (b *Backend) Download(dst any, src *ops.Tensor) error {
	if err := checkHost("Download from", src, dst); err != nil {
		return err
	}
	switch d := dst.(type) {
	case []float32:
		copy(d, src.Storage.([]float32))
	case []float64:
		copy(d, src.Storage.([]float64))
	case []int32:
		copy(d, src.Storage.([]int32))
	case []uint16:
		copy(d, src.Storage.([]uint16))
	}
	return nil
}

// checkHost checks a device tensor and a host slice for Upload/Download.
func checkHost(what string, t *ops.Tensor, host any) error {
	if t == nil {
		return fmt.Errorf("cpu: %s a nil tensor: %w", what, ops.ErrValue)
	}
	if t.Storage == nil {
		return fmt.Errorf("cpu: %s %v: %w: %w", what, t, ops.ErrValue, errFreed)
	}
	want, n := "", -1
	switch dt := t.DType(); dt {
	case ops.F32:
		want = "[]float32"
		if s, ok := host.([]float32); ok {
			n = len(s)
		}
	case ops.F64:
		want = "[]float64"
		if s, ok := host.([]float64); ok {
			n = len(s)
		}
	case ops.I32:
		want = "[]int32"
		if s, ok := host.([]int32); ok {
			n = len(s)
		}
	case ops.BF16:
		want = "[]uint16 (bf16 bits)"
		if s, ok := host.([]uint16); ok {
			n = len(s)
		}
	default:
		return fmt.Errorf("cpu: %s %v: %w: invalid dtype", what, t, ops.ErrDType)
	}
	if n < 0 {
		return fmt.Errorf("cpu: %s %v: %w: host slice is %T, want %s", what, t, ops.ErrDType, host, want)
	}
	if n != t.Len() {
		return fmt.Errorf("cpu: %s %v: %w: host slice has %d elements, want %d", what, t, ops.ErrShape, n, t.Len())
	}
	if err := storageOK(t); err != nil {
		return fmt.Errorf("cpu: %s %v: %w", what, t, err)
	}
	return nil
}

// storageOK checks that t's storage is a CPU slice of its dtype and length.
func storageOK(t *ops.Tensor) error {
	n := -1
	ok := false
	switch s := t.Storage.(type) {
	case []float32:
		n, ok = len(s), t.DType() == ops.F32
	case []float64:
		n, ok = len(s), t.DType() == ops.F64
	case []int32:
		n, ok = len(s), t.DType() == ops.I32
	case []uint16:
		n, ok = len(s), t.DType() == ops.BF16
	}
	if !ok {
		return fmt.Errorf("%w: storage %T does not hold %v data of a CPU backend", ops.ErrDType, t.Storage, t.DType())
	}
	if n != t.Len() {
		return fmt.Errorf("%w: storage has %d elements, shape needs %d", ops.ErrShape, n, t.Len())
	}
	return nil
}

// MemInfo returns the available and total system memory from /proc/meminfo, or, where
// that file cannot be read, the Go runtime's view (memory obtained from the OS).
func (b *Backend) MemInfo() (free, total int64, err error) {
	if f, t, ok := procMemInfo(); ok {
		return f, t, nil
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	total = int64(ms.Sys)
	free = max(total-int64(ms.HeapInuse)-int64(ms.StackInuse), 0)
	return free, total, nil
}

func procMemInfo() (free, total int64, ok bool) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, false
	}
	var haveFree, haveTotal bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 2 && string(f[2]) == "kB" {
			v *= 1024
		}
		switch string(f[0]) {
		case "MemTotal:":
			total, haveTotal = v, true
		case "MemAvailable:":
			free, haveFree = v, true
		}
	}
	return free, total, haveFree && haveTotal && total > 0
}
