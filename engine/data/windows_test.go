package data

import (
	"errors"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"strings"
	"testing"
)

func seq(n int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(i)
	}
	return s
}

func TestSplit(t *testing.T) {
	cases := []struct {
		n            int
		frac         float64
		train, held  int
		errSubstring string
	}{
		{n: 10, frac: 0.1, train: 9, held: 1},
		{n: 1115394, frac: 0.1, train: 1003854, held: 111540}, // tinyshakespeare, = nanoGPT int(n*0.9)
		{n: 1_000_000, frac: 0.1, train: 900_000, held: 100_000},
		{n: 7, frac: 0.5, train: 3, held: 4},
		{n: 10, frac: 0, errSubstring: "not in (0, 1)"},
		{n: 10, frac: 1, errSubstring: "not in (0, 1)"},
		{n: 10, frac: -0.1, errSubstring: "not in (0, 1)"},
		{n: 10, frac: 1.5, errSubstring: "not in (0, 1)"},
		{n: 10, frac: math.NaN(), errSubstring: "not in (0, 1)"},
		{n: 1, frac: 0.5, errSubstring: "both must be non-empty"},
		{n: 0, frac: 0.1, errSubstring: "both must be non-empty"},
		{n: 10, frac: 1e-17, errSubstring: "0 held-out"}, // 1-frac rounds to 1
	}
	for _, c := range cases {
		ids := seq(c.n)
		train, held, err := Split(ids, c.frac)
		if c.errSubstring != "" {
			if err == nil || !strings.Contains(err.Error(), c.errSubstring) {
				t.Errorf("Split(n=%d, %v) error = %v, want one containing %q", c.n, c.frac, err, c.errSubstring)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Split(n=%d, %v): %v", c.n, c.frac, err)
		}
		if len(train) != c.train || len(held) != c.held {
			t.Errorf("Split(n=%d, %v) = %d/%d tokens, want %d/%d", c.n, c.frac, len(train), len(held), c.train, c.held)
		}
		if train[0] != 0 || held[0] != int32(c.train) || held[len(held)-1] != int32(c.n-1) {
			t.Errorf("Split(n=%d): train must be the prefix and held-out the suffix", c.n)
		}
	}
	ids := seq(10)
	train, held, _ := Split(ids, 0.2)
	_ = append(train, -1)
	if held[0] != 8 {
		t.Errorf("appending to train overwrote held-out[0]: got %d, want 8", held[0])
	}
}

func TestNewWindowsTooShort(t *testing.T) {
	_, err := NewWindows(seq(100), 256)
	if !errors.Is(err, ErrTooShort) {
		t.Fatalf("error = %v, want ErrTooShort", err)
	}
	var te *TooShortError
	if !errors.As(err, &te) || te.N != 100 || te.L != 256 {
		t.Fatalf("errors.As gave %+v, want N=100 L=256", te)
	}
	for _, s := range []string{"100 tokens", "256 tokens"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if _, err := NewWindows(nil, 1); !errors.Is(err, ErrTooShort) {
		t.Errorf("empty stream: error = %v, want ErrTooShort", err)
	}
	if _, err := NewWindows(seq(10), 0); err == nil || errors.Is(err, ErrTooShort) {
		t.Errorf("L=0: error = %v, want a non-ErrTooShort error", err)
	}
}

func TestEvalWindows(t *testing.T) {
	cases := []struct{ n, l, count, covered, dropped int }{
		{10, 3, 3, 9, 1},
		{9, 3, 3, 9, 0},
		{3, 3, 1, 3, 0},
		{5, 3, 1, 3, 2},
		{1115394 / 10, 256, 435, 111360, 179},
	}
	for _, c := range cases {
		w, err := NewWindows(seq(c.n), c.l)
		if err != nil {
			t.Fatal(err)
		}
		s := w.EvalWindows()
		if len(s.Windows) != c.count || s.Covered != c.covered || s.Dropped != c.dropped {
			t.Errorf("n=%d L=%d: %d windows, covered %d, dropped %d; want %d, %d, %d", c.n, c.l, len(s.Windows), s.Covered, s.Dropped, c.count, c.covered, c.dropped)
		}
		for k, win := range s.Windows {
			if len(win) != c.l || cap(win) != c.l || win[0] != int32(k*c.l) {
				t.Errorf("n=%d L=%d: window %d starts at %d with len %d cap %d, want start %d len=cap=%d", c.n, c.l, k, win[0], len(win), cap(win), k*c.l, c.l)
			}
		}
	}
}

func TestTrainBatchRowsAreWindowsAtOffsets(t *testing.T) {
	const n, l, b = 1000, 16, 8
	w, err := NewWindows(seq(n), l)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]int32, b*l)
	if err := w.TrainBatch(dst, b, 42, 7); err != nil {
		t.Fatal(err)
	}
	for row := 0; row < b; row++ {
		o := w.Offset(42, 7, row)
		if o < 0 || o > n-l {
			t.Fatalf("offset %d outside [0, %d]", o, n-l)
		}
		if !slices.Equal(dst[row*l:(row+1)*l], seq(n)[o:o+l]) {
			t.Errorf("row %d is not tokens[%d:%d]", row, o, o+l)
		}
	}
	// Resume: a fresh Windows over the same tokens draws the same batch for the same step.
	w2, _ := NewWindows(seq(n), l)
	dst2 := make([]int32, b*l)
	_ = w2.TrainBatch(dst2, b, 42, 7)
	if !slices.Equal(dst, dst2) {
		t.Errorf("same (seed, step) gave different batches: resume would not be exact")
	}
	_ = w2.TrainBatch(dst2, b, 42, 8)
	if slices.Equal(dst, dst2) {
		t.Errorf("steps 7 and 8 gave identical batches")
	}
	_ = w2.TrainBatch(dst2, b, 43, 7)
	if slices.Equal(dst, dst2) {
		t.Errorf("seeds 42 and 43 gave identical batches")
	}
	// Split over "devices": rows [0,3) and [3,8) reproduce the single batch.
	part1, part2 := make([]int32, 3*l), make([]int32, 5*l)
	if err := w.TrainRows(part1, 0, 3, 42, 7); err != nil {
		t.Fatal(err)
	}
	if err := w.TrainRows(part2, 3, 5, 42, 7); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(append(part1, part2...), dst) {
		t.Errorf("rows computed in two parts differ from the whole batch")
	}
	if err := w.TrainRows(part1, -1, 3, 1, 1); err == nil {
		t.Errorf("TrainRows(first=-1): no error")
	}
	if err := w.TrainBatch(make([]int32, b*l-1), b, 1, 1); err == nil || !strings.Contains(err.Error(), "want B·L") {
		t.Errorf("short dst: error = %v", err)
	}
	if err := w.TrainBatch(nil, 0, 1, 1); err == nil {
		t.Errorf("B=0: no error")
	}
}

// TestOffsetsUniform draws many offsets over M = 7 values and applies a chi-square test.
// The draws are deterministic, so the test cannot flake; the threshold is the 0.999
// quantile of chi-square with 6 degrees of freedom.
func TestOffsetsUniform(t *testing.T) {
	for _, m := range []int{1, 2, 7} {
		w, err := NewWindows(seq(16+m-1), 16)
		if err != nil {
			t.Fatal(err)
		}
		if w.NumOffsets() != m {
			t.Fatalf("NumOffsets = %d, want %d", w.NumOffsets(), m)
		}
		counts := make([]int, m)
		const draws = 70000
		for i := 0; i < draws; i++ {
			o := w.Offset(3, uint64(i/64), i%64)
			if o < 0 || o >= m {
				t.Fatalf("offset %d outside [0, %d)", o, m)
			}
			counts[o]++
		}
		chi2 := 0.0
		exp := float64(draws) / float64(m)
		for _, c := range counts {
			chi2 += (float64(c) - exp) * (float64(c) - exp) / exp
		}
		if m == 7 && chi2 > 22.46 {
			t.Errorf("M=%d counts %v: chi-square %.2f > 22.46 (p < 0.001)", m, counts, chi2)
		}
		for v, c := range counts {
			if c == 0 {
				t.Errorf("M=%d: offset %d never drawn (counts %v)", m, v, counts)
			}
		}
	}
}

// TestMulShiftMatchesBigInt checks the 53-bit multiply-shift in uniformInt against
// math/big for edge cases: ⌊k·m/2^53⌋ and (k·m mod 2^53).
func TestMulShiftMatchesBigInt(t *testing.T) {
	const two53 = uint64(1) << 53
	ks := []uint64{0, 1, 2, 12345, two53 / 3, two53 / 2, two53 - 2, two53 - 1}
	ms := []uint64{1, 2, 3, 7, 1000003, 90_000_000, two53 / 3, two53 - 1, two53}
	for _, k := range ks {
		for _, m := range ms {
			hi, lo := bits.Mul64(k, m)
			off := hi<<11 | lo>>53
			frac := lo & (two53 - 1)
			p := new(big.Int).Mul(new(big.Int).SetUint64(k), new(big.Int).SetUint64(m))
			wantOff := new(big.Int).Rsh(p, 53)
			wantFrac := new(big.Int).And(p, new(big.Int).SetUint64(two53-1))
			if off != wantOff.Uint64() || frac != wantFrac.Uint64() {
				t.Errorf("k=%d m=%d: off,frac = %d,%d; want %s,%s", k, m, off, frac, wantOff, wantFrac)
			}
			if off >= m {
				t.Errorf("k=%d m=%d: offset %d not below m", k, m, off)
			}
		}
	}
	// uniformInt on the largest M still returns values in range.
	for i := uint64(0); i < 100; i++ {
		if v := uniformInt(1, i, 0, two53); v < 0 || uint64(v) >= two53 {
			t.Fatalf("uniformInt(M=2^53) = %d out of range", v)
		}
	}
}
