package sim

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

// config is one way of scheduling a launch; positive tests run every config and require identical bits.
type config struct {
	name string
	opt  Options
}

var (
	// allConfigs: forward/reverse thread order, one and two workers.
	allConfigs = []config{
		{"fwd-w1", Options{}},
		{"rev-w1", Options{Reverse: true}},
		{"fwd-w2", Options{Workers: 2}},
		{"rev-w2", Options{Reverse: true, Workers: 2}},
	}
	// oneWorker: for kernels whose results depend on block order (float atomics).
	oneWorker = allConfigs[:2]
)

func d1(x int) Dim3       { return Dim3{x, 1, 1} }
func d3(x, y, z int) Dim3 { return Dim3{x, y, z} }

// dev is simulated device memory freed at the end of the test.
func dev(t testing.TB, bytes int) uintptr {
	t.Helper()
	p, err := Alloc(bytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Free(p); err != nil {
			t.Error(err)
		}
	})
	return p
}

// upload copies a slice of fixed-size values into new device memory.
func upload[T any](t testing.TB, xs []T) uintptr {
	t.Helper()
	var buf []byte
	buf, err := binary.Append(buf, binary.LittleEndian, xs)
	if err != nil {
		t.Fatal(err)
	}
	p := dev(t, max(len(buf), 1))
	CopyIn(p, buf)
	return p
}

// download reads n values of type T from device memory.
func download[T any](t testing.TB, p uintptr, n int) []T {
	t.Helper()
	out := make([]T, n)
	buf := make([]byte, binary.Size(out))
	CopyOut(buf, p)
	if _, err := binary.Decode(buf, binary.LittleEndian, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr(p uintptr) uint64 { return uint64(p) }
func i32(v int32) uint64   { return uint64(uint32(v)) }
func u32(v uint32) uint64  { return uint64(v) }
func i64(v int64) uint64   { return uint64(v) }
func f32(v float32) uint64 { return uint64(math.Float32bits(v)) }
func f64(v float64) uint64 { return math.Float64bits(v) }
func fill[T any](n int, v T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// mustLaunch fails the test on any error.
func mustLaunch(t testing.TB, kernel string, grid, block Dim3, smem int, args []uint64, opt Options) {
	t.Helper()
	if err := Launch(kernel, grid, block, smem, args, opt); err != nil {
		t.Fatalf("Launch(%s): %v", kernel, err)
	}
}

// asFault extracts the *Fault from err or fails the test.
func asFault(t testing.TB, err error) *Fault {
	t.Helper()
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("got error %v (%T), want a *Fault", err, err)
	}
	return f
}

// siteLine returns the line of testdata/selftest.cu tagged "SITE:<name>".
func siteLine(t testing.TB, name string) int {
	t.Helper()
	f, err := os.Open("testdata/selftest.cu")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for line := 1; s.Scan(); line++ {
		if strings.Contains(s.Text(), "SITE:"+name) && !strings.Contains(s.Text(), "SITE:"+name+"-") {
			return line
		}
	}
	t.Fatalf("no SITE:%s in testdata/selftest.cu", name)
	return 0
}

// bitsEqual compares two float32 slices bit for bit.
func bitsEqual32(a, b []float32) error {
	if len(a) != len(b) {
		return fmt.Errorf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return fmt.Errorf("element %d: %v (%#08x) vs %v (%#08x)", i, a[i], math.Float32bits(a[i]), b[i], math.Float32bits(b[i]))
		}
	}
	return nil
}

// lcg is a tiny deterministic generator for test data.
type lcg uint64

func (g *lcg) next() uint32 {
	*g = *g*6364136223846793005 + 1442695040888963407
	return uint32(*g >> 33)
}
func (g *lcg) float() float32  { return float32(g.next()) / float32(1<<31) } // [0, 1)
func (g *lcg) signed() float32 { return 2*g.float() - 1 }                    // [-1, 1)
func (g *lcg) intn(n int) int  { return int(g.next() % uint32(n)) }

// bf16 of a float32 by round-to-nearest-even, computed independently of the C++ code: the two
// neighbouring bf16 values are compared in float64.
func toBF16(f float32) uint16 {
	if f != f {
		return 0x7fff
	}
	u := math.Float32bits(f)
	lo := uint16(u >> 16) // truncation toward zero
	if u&0xffff == 0 {
		return lo
	}
	hi := lo + 1 // next bf16 away from zero (may become inf)
	vf := math.Abs(float64(f))
	vlo := math.Abs(float64(fromBF16(lo)))
	vhi := math.Abs(float64(fromBF16(hi)))
	if hi&0x7fff == 0x7f80 {
		vhi = math.Ldexp(1, 128) // rounding to infinity happens from the midpoint to 2^128
	}
	switch dl, dh := vf-vlo, vhi-vf; {
	case dl < dh:
		return lo
	case dh < dl:
		return hi
	case lo&1 == 0:
		return lo
	default:
		return hi
	}
}

func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
