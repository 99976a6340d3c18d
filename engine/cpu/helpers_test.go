package cpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// testBackend returns a backend whose chunks are tiny, so that the small shapes of the
// tests exercise the parallel paths.
func testBackend(workers int) *Backend {
	b := New(WithWorkers(workers))
	b.parMin = 5
	return b
}

// newRand returns a deterministic generator for test data.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// randVec returns n values uniform in [-scale, scale).
func randVec(r *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = (2*r.Float64() - 1) * scale
	}
	return out
}

// roundTo returns xs rounded to the precision of dt (F32 rounds to float32).
func roundTo(dt ops.DType, xs []float64) []float64 {
	out := append([]float64(nil), xs...)
	if dt == ops.F32 {
		for i, x := range out {
			out[i] = float64(float32(x))
		}
	}
	return out
}

// mk allocates a float tensor of dtype dt holding data (rounded to dt).
func mk(t testing.TB, b *Backend, dt ops.DType, data []float64, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatalf("Alloc %v%v: %v", dt, shape, err)
	}
	if len(data) != x.Len() {
		t.Fatalf("mk: %d values for shape %v", len(data), shape)
	}
	switch dt {
	case ops.F32:
		s := make([]float32, len(data))
		for i, v := range data {
			s[i] = float32(v)
		}
		err = b.Upload(x, s)
	case ops.F64:
		err = b.Upload(x, append([]float64(nil), data...))
	default:
		t.Fatalf("mk: dtype %v", dt)
	}
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return x
}

// zeros allocates a zero float tensor.
func zeros(t testing.TB, b *Backend, dt ops.DType, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatalf("Alloc %v%v: %v", dt, shape, err)
	}
	return x
}

// mkI allocates an I32 tensor.
func mkI(t testing.TB, b *Backend, data []int32, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(ops.I32, shape...)
	if err != nil {
		t.Fatalf("Alloc: %v", err)
	}
	if err := b.Upload(x, append([]int32(nil), data...)); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return x
}

// get downloads a float tensor as float64 values.
func get(t testing.TB, b *Backend, x *ops.Tensor) []float64 {
	t.Helper()
	out := make([]float64, x.Len())
	switch x.DType() {
	case ops.F32:
		s := make([]float32, x.Len())
		if err := b.Download(s, x); err != nil {
			t.Fatalf("Download: %v", err)
		}
		for i, v := range s {
			out[i] = float64(v)
		}
	case ops.F64:
		if err := b.Download(out, x); err != nil {
			t.Fatalf("Download: %v", err)
		}
	default:
		t.Fatalf("get: dtype %v", x.DType())
	}
	return out
}

// getI downloads an I32 tensor.
func getI(t testing.TB, b *Backend, x *ops.Tensor) []int32 {
	t.Helper()
	out := make([]int32, x.Len())
	if err := b.Download(out, x); err != nil {
		t.Fatalf("Download: %v", err)
	}
	return out
}

// must fails the test on a non-nil error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tol is an elementwise tolerance atol + rtol·|want|.
type tol struct{ rtol, atol float64 }

// dtCase is one element type with its forward tolerance against a float64 reference.
type dtCase struct {
	dt  ops.DType
	tol tol
}

var fwdTypes = []dtCase{
	{ops.F32, tol{1e-5, 1e-6}},
	{ops.F64, tol{1e-12, 1e-13}},
}

// close reports the first mismatches between got and want ("got X, want Y").
func closeTo(t testing.TB, what string, got, want []float64, tl tol) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		g, w := got[i], want[i]
		if math.IsNaN(w) && math.IsNaN(g) || g == w {
			continue
		}
		if !(math.Abs(g-w) <= tl.atol+tl.rtol*math.Abs(w)) {
			if bad < 5 {
				t.Errorf("%s[%d]: got %.17g, want %.17g (diff %.3g, tolerance %.3g)", what, i, g, w, math.Abs(g-w), tl.atol+tl.rtol*math.Abs(w))
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d values out of tolerance", what, bad, len(got))
	}
}

// equalI compares integer outputs exactly.
func equalI(t testing.TB, what string, got, want []int32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad < 5 {
				t.Errorf("%s[%d]: got %d, want %d", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(got))
	}
}

// wantOpError checks that err is an *ops.OpError of the op and sentinel kind whose message
// contains every fragment.
func wantOpError(t testing.TB, err error, op ops.Op, kind error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v error from %v", kind, op)
	}
	var oe *ops.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("got error %T %q, want *ops.OpError", err, err)
	}
	if oe.Op != op {
		t.Errorf("got op %v, want %v (%v)", oe.Op, op, err)
	}
	if !errors.Is(err, kind) {
		t.Errorf("got kind %v, want %v (%v)", oe.Kind, kind, err)
	}
	msg := err.Error()
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}

// maxAbs returns max |x|.
func maxAbs(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, math.Abs(x))
	}
	return m
}
