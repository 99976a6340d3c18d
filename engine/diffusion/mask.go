package diffusion

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// MaskProbs fills dst[b] = 1 − α(ts[b]) = s.MaskProb(ts[b]), the per-sequence masking
// probability of MD4 (md4.md §1.1, §2.3 step 2): exactly what ops.MaskParams.MaskProb
// ([B] F64) takes. It panics if len(dst) != len(ts).
func MaskProbs(dst []float64, s Schedule, ts []float64) {
	if len(dst) != len(ts) {
		panic(fmt.Sprintf("diffusion: MaskProbs: len(dst)=%d != len(ts)=%d", len(dst), len(ts)))
	}
	for b, t := range ts {
		dst[b] = s.MaskProb(t)
	}
}

// MaskRef is the host reference of forward masking x_t ~ q(x_t | x_0) (md4.md §1.1), the
// exact rule of ops.MaskParams that every backend must reproduce bit for bit. xt and x0
// are [B, L] row-major; for every position (b, l), with u = rng.Uniform64(seed, step,
// purpose, b·L + l) and p = maskProb[b] (MD4, len(maskProb) = B) or
// p = maskProb[b·V + x0[b·L+l]] (GenMD4's per-token table, len(maskProb) = B·V, V = maskID):
//
//	xt[b·L+l] = maskID  if l < seqLens[b] and u < p  (compared in float64),  else x0[b·L+l]
//
// seqLens [B] may be nil (every sequence has length L); padding positions l ≥ seqLens[b]
// are never masked (pitfalls B07). So p = 1 masks every real position and p = 0 none. xt
// may alias x0. Inputs are validated as the CPU backend does: errors wrap ops.ErrValue (an
// x0 value outside [0, V), which includes the mask id; a sequence length outside [1, L];
// a probability outside [0, 1] or NaN) or ops.ErrShape (slice lengths); on error xt is
// unchanged.
func MaskRef(xt, x0 []int32, B, L int, seqLens []int32, maskProb []float64, maskID int32,
	seed, step uint64, purpose rng.Purpose) error {
	if maskID < 1 {
		return ops.Errorf(ops.OpMaskTokens, "MaskID", ops.ErrValue, "MaskID (= V) must be ≥ 1, got %d", maskID)
	}
	if B < 0 || L < 0 || len(x0) != B*L || len(xt) != B*L {
		return ops.Errorf(ops.OpMaskTokens, "X0", ops.ErrShape, "len(x0)=%d, len(xt)=%d, want B·L = %d·%d", len(x0), len(xt), B, L)
	}
	if seqLens != nil && len(seqLens) != B {
		return ops.Errorf(ops.OpMaskTokens, "SeqLens", ops.ErrShape, "len %d, want B = %d", len(seqLens), B)
	}
	V := int(maskID)
	perToken := false
	switch len(maskProb) {
	case B:
	case B * V:
		perToken = true
	default:
		return ops.Errorf(ops.OpMaskTokens, "MaskProb", ops.ErrShape, "len %d, want B = %d or B·V = %d", len(maskProb), B, B*V)
	}
	if perToken && V == 1 && B > 0 {
		perToken = false // [B] and [B, 1] coincide; the per-sequence reading is the same rule
	}
	for i, x := range x0 {
		if x < 0 || x >= maskID {
			return ops.Errorf(ops.OpMaskTokens, "X0", ops.ErrValue, "%d at index %d is not in [0, %d)", x, i, maskID)
		}
	}
	for b, n := range seqLens {
		if n < 1 || int(n) > L {
			return ops.Errorf(ops.OpMaskTokens, "SeqLens", ops.ErrValue, "SeqLens[%d] = %d is not in [1, %d]", b, n, L)
		}
	}
	for i, p := range maskProb {
		if !(p >= 0 && p <= 1) {
			return ops.Errorf(ops.OpMaskTokens, "MaskProb", ops.ErrValue, "probability %v at index %d is not in [0, 1]", p, i)
		}
	}
	for b := 0; b < B; b++ {
		n := L
		if seqLens != nil {
			n = int(seqLens[b])
		}
		row := b * L
		for l := 0; l < L; l++ {
			x := x0[row+l]
			if l >= n {
				xt[row+l] = x
				continue
			}
			var p float64
			if perToken {
				p = maskProb[b*V+int(x)]
			} else {
				p = maskProb[b]
			}
			if rng.Uniform64(seed, step, purpose, uint64(row+l)) < p {
				xt[row+l] = maskID
			} else {
				xt[row+l] = x
			}
		}
	}
	return nil
}

// CountMasked returns the number of positions of z equal to maskID.
func CountMasked(z []int32, maskID int32) int {
	n := 0
	for _, x := range z {
		if x == maskID {
			n++
		}
	}
	return n
}
