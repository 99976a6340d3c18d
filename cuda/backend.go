package cuda

import (
	"fmt"
	"sort"
	"unsafe"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// Backend implements ops.Backend on a Device: tensors live in device memory and every op
// is one or more kernel launches (or a GEMM). The same Backend drives the simulated and
// the real device.
type Backend struct {
	dev     Device
	guard   int // guard band bytes on each side of every allocation (0 = off)
	live    map[*buffer]struct{}
	scratch map[string]*buffer // per-launcher reusable scratch (e.g. reduction partials)
}

// buffer is the Storage of a tensor on a Backend.
type buffer struct {
	base  Ptr // start of the allocation (including the leading guard band)
	ptr   Ptr // start of the tensor's data
	bytes int // data bytes
	view  bool
	freed bool
}

// Option configures a Backend.
type Option func(*Backend)

// WithGuardBands pads every allocation with n bytes of a NaN canary (0xFF) on each side;
// CheckGuards verifies them (used by the parity harness to catch out-of-bounds writes).
func WithGuardBands(n int) Option {
	return func(b *Backend) { b.guard = (n + 255) / 256 * 256 }
}

// NewBackend wraps dev.
func NewBackend(dev Device, opts ...Option) *Backend {
	b := &Backend{dev: dev, live: map[*buffer]struct{}{}, scratch: map[string]*buffer{}}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Device returns the underlying device.
func (b *Backend) Device() Device { return b.dev }

// Name implements ops.Device.
func (b *Backend) Name() string { return b.dev.Name() }

// Alloc implements ops.Device: zero-filled device memory (plus guard bands if enabled).
func (b *Backend) Alloc(dt ops.DType, shape ...int) (*ops.Tensor, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("cuda: negative dimension in shape %v", shape)
		}
		n *= d
	}
	bytes := n * dt.Size()
	buf, err := b.allocBuffer(bytes)
	if err != nil {
		return nil, err
	}
	t, err := ops.NewTensor(b, dt, shape, buf)
	if err != nil {
		b.freeBuffer(buf)
		return nil, err
	}
	return t, nil
}

func (b *Backend) allocBuffer(bytes int) (*buffer, error) {
	total := bytes + 2*b.guard
	if total == 0 {
		total = 256 // keep pointers distinct and non-null for empty tensors
	}
	base, err := b.dev.Alloc(total)
	if err != nil {
		return nil, err
	}
	if b.guard > 0 {
		if err := b.dev.Memset(base, 0xFF, total); err != nil {
			b.dev.Free(base)
			return nil, err
		}
	}
	buf := &buffer{base: base, ptr: base + Ptr(b.guard), bytes: bytes}
	if bytes > 0 {
		if err := b.dev.Memset(buf.ptr, 0, bytes); err != nil {
			b.dev.Free(base)
			return nil, err
		}
	}
	b.live[buf] = struct{}{}
	return buf, nil
}

func (b *Backend) freeBuffer(buf *buffer) error {
	if buf.freed {
		return fmt.Errorf("cuda: double free")
	}
	buf.freed = true
	delete(b.live, buf)
	return b.dev.Free(buf.base)
}

// Free implements ops.Device.
func (b *Backend) Free(t *ops.Tensor) error {
	buf, err := b.buf(t, "Free")
	if err != nil {
		return err
	}
	if buf.view {
		return fmt.Errorf("cuda: Free of a view (%v); free the tensor it was taken from", t)
	}
	return b.freeBuffer(buf)
}

// View implements ops.Device.
func (b *Backend) View(t *ops.Tensor, start, end int) (*ops.Tensor, error) {
	buf, err := b.buf(t, "View")
	if err != nil {
		return nil, err
	}
	if t.Rank() == 0 || start < 0 || end < start || end > t.Dim(0) {
		return nil, fmt.Errorf("cuda: View rows [%d, %d) of %v is out of range", start, end, t)
	}
	rowBytes := 0
	if t.Dim(0) > 0 {
		rowBytes = t.Bytes() / t.Dim(0)
	}
	shape := t.Shape()
	shape[0] = end - start
	v := &buffer{base: buf.base, ptr: buf.ptr + Ptr(start*rowBytes), bytes: (end - start) * rowBytes, view: true}
	nt, err := ops.NewTensor(b, t.DType(), shape, v)
	if err != nil {
		return nil, err
	}
	nt.Name = t.Name
	return nt, nil
}

// buf returns t's buffer after checking ownership and liveness.
func (b *Backend) buf(t *ops.Tensor, what string) (*buffer, error) {
	if t == nil {
		return nil, fmt.Errorf("cuda: %s of a nil tensor", what)
	}
	buf, ok := t.Storage.(*buffer)
	if !ok || t.Device() != ops.Device(b) {
		return nil, fmt.Errorf("cuda: %s: %v does not belong to device %s", what, t, b.Name())
	}
	if buf.freed {
		return nil, fmt.Errorf("cuda: %s: %v was freed", what, t)
	}
	return buf, nil
}

// ptr returns the device address of t's data; nil tensors give 0. Launchers call it only
// after Validate, which guarantees ownership checks are the only possible failure.
func (b *Backend) ptr(t *ops.Tensor) (Ptr, error) {
	if t == nil {
		return 0, nil
	}
	buf, err := b.buf(t, "launch")
	if err != nil {
		return 0, err
	}
	return buf.ptr, nil
}

// ptrs resolves several tensors at once (nil → 0).
func (b *Backend) ptrs(ts ...*ops.Tensor) ([]Ptr, error) {
	out := make([]Ptr, len(ts))
	for i, t := range ts {
		p, err := b.ptr(t)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// Upload implements ops.Device.
func (b *Backend) Upload(dst *ops.Tensor, src any) error {
	buf, err := b.buf(dst, "Upload")
	if err != nil {
		return err
	}
	raw, err := hostBytes(dst, src)
	if err != nil {
		return err
	}
	if len(raw) == 0 {
		return nil
	}
	return b.dev.CopyHtoD(buf.ptr, raw)
}

// Download implements ops.Device.
func (b *Backend) Download(dst any, src *ops.Tensor) error {
	buf, err := b.buf(src, "Download")
	if err != nil {
		return err
	}
	raw, err := hostBytes(src, dst)
	if err != nil {
		return err
	}
	if len(raw) == 0 {
		return nil
	}
	return b.dev.CopyDtoH(raw, buf.ptr)
}

// hostBytes views a typed host slice as bytes after checking it matches t's dtype and length.
func hostBytes(t *ops.Tensor, host any) ([]byte, error) {
	var n, size int
	var p unsafe.Pointer
	want := t.DType()
	switch s := host.(type) {
	case []float32:
		n, size = len(s), 4
		if want == ops.F32 && n > 0 {
			p = unsafe.Pointer(&s[0])
		}
		if want != ops.F32 {
			return nil, fmt.Errorf("cuda: host []float32 does not match %v", t)
		}
	case []float64:
		n, size = len(s), 8
		if want != ops.F64 {
			return nil, fmt.Errorf("cuda: host []float64 does not match %v", t)
		}
		if n > 0 {
			p = unsafe.Pointer(&s[0])
		}
	case []int32:
		n, size = len(s), 4
		if want != ops.I32 {
			return nil, fmt.Errorf("cuda: host []int32 does not match %v", t)
		}
		if n > 0 {
			p = unsafe.Pointer(&s[0])
		}
	case []uint16:
		n, size = len(s), 2
		if want != ops.BF16 {
			return nil, fmt.Errorf("cuda: host []uint16 (bf16 bits) does not match %v", t)
		}
		if n > 0 {
			p = unsafe.Pointer(&s[0])
		}
	default:
		return nil, fmt.Errorf("cuda: unsupported host type %T for %v", host, t)
	}
	if n != t.Len() {
		return nil, fmt.Errorf("cuda: host slice has %d elements, %v has %d", n, t, t.Len())
	}
	if n == 0 {
		return nil, nil
	}
	return unsafe.Slice((*byte)(p), n*size), nil
}

// Sync implements ops.Device.
func (b *Backend) Sync() error { return b.dev.Sync() }

// MemInfo implements ops.Device.
func (b *Backend) MemInfo() (int64, int64, error) { return b.dev.MemInfo() }

// CheckGuards verifies the canaries of every live allocation (when guard bands are on) and
// reports the first corrupted one with the offending offset.
func (b *Backend) CheckGuards() error {
	if b.guard == 0 {
		return nil
	}
	bufs := make([]*buffer, 0, len(b.live))
	for buf := range b.live {
		bufs = append(bufs, buf)
	}
	sort.Slice(bufs, func(i, j int) bool { return bufs[i].base < bufs[j].base })
	g := make([]byte, b.guard)
	for _, buf := range bufs {
		for side, at := range []Ptr{buf.base, buf.ptr + Ptr(buf.bytes)} {
			if err := b.dev.CopyDtoH(g, at); err != nil {
				return err
			}
			for i, v := range g {
				if v != 0xFF {
					where := "before"
					off := i - b.guard
					if side == 1 {
						where, off = "after", i
					}
					return fmt.Errorf("cuda: guard band corrupted %s an allocation of %d bytes at %#x (byte offset %d from its data: 0x%02x)",
						where, buf.bytes, uint64(buf.ptr), off, v)
				}
			}
		}
	}
	return nil
}

// scratchBuf returns a reusable device buffer of at least n bytes for a launcher.
func (b *Backend) scratchBuf(key string, n int) (Ptr, error) {
	if s := b.scratch[key]; s != nil && s.bytes >= n {
		return s.ptr, nil
	} else if s != nil {
		b.freeBuffer(s)
	}
	s, err := b.allocBuffer(n)
	if err != nil {
		return 0, err
	}
	b.scratch[key] = s
	return s.ptr, nil
}

// supported records, per op, the dtypes its launcher handles. Launcher files register in
// init functions; Supports reads it.
var supported = map[ops.Op]map[ops.DType]bool{}

// register declares that the launcher of op handles dtypes dts.
func register(op ops.Op, dts ...ops.DType) {
	if supported[op] == nil {
		supported[op] = map[ops.DType]bool{}
	}
	for _, d := range dts {
		supported[op][d] = true
	}
}

// Supports implements ops.Backend from the launchers' registrations.
func (b *Backend) Supports(op ops.Op, dt ops.DType) bool { return supported[op][dt] }

var _ ops.Backend = (*Backend)(nil)
