package data

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// ErrTooShort is the sentinel for a token stream shorter than one window; errors
// returned for that case are *TooShortError values that match it with errors.Is.
var ErrTooShort = errors.New("token stream shorter than one window")

// TooShortError reports a token stream of N tokens that cannot fill one window of L
// tokens (pitfalls B09). It is returned before any model compute, so no empty batch,
// division by zero or NaN can reach the loss.
type TooShortError struct {
	N int // tokens available
	L int // window (context) length
}

// Error names both lengths and what to do.
func (e *TooShortError) Error() string {
	return fmt.Sprintf("%d tokens cannot fill one window of %d tokens; use a longer split or a shorter context (--seq-len ≤ %d)", e.N, e.L, e.N)
}

// Is makes errors.Is(err, ErrTooShort) true.
func (e *TooShortError) Is(target error) bool { return target == ErrTooShort }

// Windows serves fixed-length windows of a token stream: random training windows and
// non-overlapping evaluation windows. It does not copy or modify the tokens.
type Windows struct {
	tokens []int32
	l      int
}

// NewWindows returns windows of length L over tokens. It fails with a *TooShortError
// (errors.Is(err, ErrTooShort)) when len(tokens) < L, and with a plain error when L ≤ 0.
func NewWindows(tokens []int32, L int) (*Windows, error) {
	if L <= 0 {
		return nil, fmt.Errorf("windows: window length %d must be positive", L)
	}
	if len(tokens) < L {
		return nil, &TooShortError{N: len(tokens), L: L}
	}
	return &Windows{tokens: tokens, l: L}, nil
}

// Len returns the window length L.
func (w *Windows) Len() int { return w.l }

// Tokens returns N, the number of tokens in the stream.
func (w *Windows) Tokens() int { return len(w.tokens) }

// NumOffsets returns N−L+1, the number of distinct training windows.
func (w *Windows) NumOffsets() int { return len(w.tokens) - w.l + 1 }

// Offset returns the start of training window b of step: a pure function of
// (seed, step, b), uniform over the N−L+1 offsets 0 … N−L (inclusive), so that resuming
// at any step draws exactly the batches an uninterrupted run would (pitfalls B19), and
// batch row b does not depend on how rows are split over devices.
//
// The draw is exact, with no modulo bias: a 53-bit uniform k from
// rng.Uniform64(seed, step, rng.PurposeData, b) is mapped to ⌊k·M / 2^53⌋ for
// M = N−L+1 (Lemire's multiply-shift), and k is rejected and redrawn when the low 53
// bits of k·M fall below 2^53 mod M, which happens with probability < M/2^53. Redraw
// a (attempt ≥ 1) uses index b | a<<48. Requirements: 0 ≤ b < 2^48, step < 2^56 (the
// rng package's counter layout), N−L+1 ≤ 2^53.
func (w *Windows) Offset(seed, step uint64, b int) int {
	return uniformInt(seed, step, uint64(b), uint64(w.NumOffsets()))
}

// uniformInt returns an exactly uniform integer in [0, m), 1 ≤ m ≤ 2^53, addressed by
// (seed, step, index) in the data stream.
func uniformInt(seed, step, index, m uint64) int {
	const shift = 53
	const mask = 1<<shift - 1
	threshold := (1 << shift) % m // 2^53 mod m
	for attempt := uint64(0); ; attempt++ {
		u := rng.Uniform64(seed, step, rng.PurposeData, index|attempt<<48)
		k := uint64(u * (1 << shift)) // exact: u = k·2^-53
		hi, lo := bits.Mul64(k, m)
		// k·m < 2^106: the offset is bits 53.. and the fraction the low 53 bits.
		off := hi<<(64-shift) | lo>>shift
		if lo&mask >= threshold {
			return int(off)
		}
	}
}

// TrainBatch fills dst (length B·L, row-major [B, L]) with B training windows for step:
// row b is tokens[o_b : o_b+L] with o_b = Offset(seed, step, b). It fails if B ≤ 0 or
// len(dst) ≠ B·L.
func (w *Windows) TrainBatch(dst []int32, B int, seed, step uint64) error {
	if B <= 0 {
		return fmt.Errorf("windows: batch size %d must be positive", B)
	}
	return w.TrainRows(dst, 0, B, seed, step)
}

// TrainRows fills dst (length n·L) with rows first … first+n−1 of the global batch of
// step, exactly as TrainBatch would place them: a device that owns a slice of the global
// batch gets the same windows whatever the number of devices. It fails if first < 0,
// n ≤ 0 or len(dst) ≠ n·L.
func (w *Windows) TrainRows(dst []int32, first, n int, seed, step uint64) error {
	if first < 0 || n <= 0 {
		return fmt.Errorf("windows: rows [%d, %d) are not a valid non-empty range", first, first+n)
	}
	if len(dst) != n*w.l {
		return fmt.Errorf("windows: destination holds %d tokens, want B·L = %d·%d = %d", len(dst), n, w.l, n*w.l)
	}
	for r := 0; r < n; r++ {
		o := w.Offset(seed, step, first+r)
		copy(dst[r*w.l:(r+1)*w.l], w.tokens[o:o+w.l])
	}
	return nil
}

// EvalSet is the non-overlapping evaluation windows of a stream.
type EvalSet struct {
	// Windows are sub-slices of the stream (no copy): window k is tokens[k·L, (k+1)·L).
	Windows [][]int32
	// Covered is the number of tokens inside the windows, len(Windows)·L.
	Covered int
	// Dropped is the number of tokens at the end that do not fill a window, N − Covered.
	Dropped int
}

// EvalWindows returns the ⌊N/L⌋ non-overlapping windows [k·L, (k+1)·L) and how many
// tokens they cover and drop. Since NewWindows refuses N < L there is always at least
// one window.
func (w *Windows) EvalWindows() EvalSet {
	n := len(w.tokens) / w.l
	s := EvalSet{Windows: make([][]int32, n), Covered: n * w.l}
	for k := range n {
		s.Windows[k] = w.tokens[k*w.l : (k+1)*w.l : (k+1)*w.l]
	}
	s.Dropped = len(w.tokens) - s.Covered
	return s
}
