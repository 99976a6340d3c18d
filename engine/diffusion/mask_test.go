package diffusion

import (
	"errors"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// randTokens fills x with deterministic pseudo-random tokens in [0, V).
func randTokens(x []int32, V int, seed uint64) {
	for i := range x {
		x[i] = int32(rng.Uniform64(seed, 0, rng.PurposeData, uint64(i)) * float64(V))
	}
}

// The rule of ops.MaskParams, position by position, from its definition.
func TestMaskRefRule(t *testing.T) {
	const B, L, V = 3, 97, 50
	x0 := make([]int32, B*L)
	randTokens(x0, V, 1)
	p := []float64{0.1, 0.5, 0.97}
	lens := []int32{97, 40, 1}
	xt := make([]int32, B*L)
	if err := MaskRef(xt, x0, B, L, lens, p, V, 11, 22, rng.PurposeMask); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < B; b++ {
		for l := 0; l < L; l++ {
			i := b*L + l
			u := rng.Uniform64(11, 22, rng.PurposeMask, uint64(i))
			want := x0[i]
			if l < int(lens[b]) && u < p[b] {
				want = V
			}
			if xt[i] != want {
				t.Fatalf("xt[%d,%d] = %d, want %d", b, l, xt[i], want)
			}
		}
	}
	// The second GenMD4 stream differs; aliasing xt = x0 works.
	xt2 := make([]int32, B*L)
	_ = MaskRef(xt2, x0, B, L, lens, p, V, 11, 22, rng.PurposeMask2)
	same := true
	for i := range xt {
		same = same && xt[i] == xt2[i]
	}
	if same {
		t.Error("PurposeMask2 gave the same masks as PurposeMask")
	}
	alias := append([]int32(nil), x0...)
	_ = MaskRef(alias, alias, B, L, lens, p, V, 11, 22, rng.PurposeMask)
	for i := range alias {
		if alias[i] != xt[i] {
			t.Fatal("in-place MaskRef differs")
		}
	}
}

// Padding is never masked; p ≥ 1 masks every real position, p ≤ 0 none.
func TestMaskRefEdges(t *testing.T) {
	const B, L, V = 4, 33, 5
	x0 := make([]int32, B*L)
	randTokens(x0, V, 2)
	xt := make([]int32, B*L)
	lens := []int32{33, 10, 1, 2}
	if err := MaskRef(xt, x0, B, L, lens, []float64{1, 1, 0, 1}, V, 1, 1, rng.PurposeMask); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < B; b++ {
		for l := 0; l < L; l++ {
			masked := xt[b*L+l] == V
			want := l < int(lens[b]) && b != 2
			if masked != want {
				t.Fatalf("b=%d l=%d: masked=%v, want %v", b, l, masked, want)
			}
		}
	}
	// Errors.
	bad := append([]int32(nil), x0...)
	bad[5] = V
	if err := MaskRef(xt, bad, B, L, nil, make([]float64, B), V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrValue) {
		t.Errorf("mask id in x0: err %v, want ErrValue", err)
	}
	bad[5] = -1
	if err := MaskRef(xt, bad, B, L, nil, make([]float64, B), V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrValue) {
		t.Errorf("negative x0: err %v, want ErrValue", err)
	}
	if err := MaskRef(xt, x0, B, L, []int32{34, 0, 0, 0}, make([]float64, B), V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrValue) {
		t.Errorf("SeqLens > L: err %v, want ErrValue", err)
	}
	if err := MaskRef(xt, x0, B, L, []int32{0, 1, 1, 1}, make([]float64, B), V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrValue) {
		t.Errorf("SeqLens = 0: err %v, want ErrValue", err)
	}
	for _, p := range []float64{-0.1, 1.5, math.NaN()} {
		if err := MaskRef(xt, x0, B, L, nil, []float64{0, p, 0, 0}, V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrValue) {
			t.Errorf("probability %v: err %v, want ErrValue", p, err)
		}
	}
	if err := MaskRef(xt, x0, B, L, nil, make([]float64, B+1), V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrShape) {
		t.Errorf("MaskProb length: err %v, want ErrShape", err)
	}
	if err := MaskRef(xt[:5], x0, B, L, nil, make([]float64, B), V, 1, 1, rng.PurposeMask); !errors.Is(err, ops.ErrShape) {
		t.Errorf("xt length: err %v, want ErrShape", err)
	}
}

// §8 item 2: K_t ~ Binomial(L, 1−α_t), E[K_t] = L(1−α_t) = L((1−2ε)t+ε) for shifted linear;
// and the pattern does not depend on the values of x0.
func TestMaskedCountBinomial(t *testing.T) {
	const B, L, V = 2000, 256, 27
	s := mustSched(t, "linear", true)
	x0a := make([]int32, B*L)
	x0b := make([]int32, B*L)
	randTokens(x0a, V, 3)
	randTokens(x0b, V, 4)
	xa := make([]int32, B*L)
	xb := make([]int32, B*L)
	for k, tt := range []float64{0, 0.01, 0.3, 0.5, 0.9, 1} {
		ts := make([]float64, B)
		for b := range ts {
			ts[b] = tt
		}
		p := make([]float64, B)
		MaskProbs(p, s, ts)
		if want := (1-2*eps)*tt + eps; math.Abs(p[0]-want) > 1e-16 {
			t.Fatalf("MaskProb(%v) = %v, want (1−2ε)t+ε = %v", tt, p[0], want)
		}
		if err := MaskRef(xa, x0a, B, L, nil, p, V, 7, uint64(k), rng.PurposeMask); err != nil {
			t.Fatal(err)
		}
		if err := MaskRef(xb, x0b, B, L, nil, p, V, 7, uint64(k), rng.PurposeMask); err != nil {
			t.Fatal(err)
		}
		for i := range xa {
			if (xa[i] == V) != (xb[i] == V) {
				t.Fatalf("t=%v: mask at %d depends on x0", tt, i)
			}
		}
		mean := float64(CountMasked(xa, V)) / B
		want := L * p[0]
		se := math.Sqrt(L * p[0] * (1 - p[0]) / B)
		if math.Abs(mean-want) > 4*se {
			t.Errorf("t=%v: mean masked %v, want L(1−α) = %v ± %v", tt, mean, want, se)
		}
	}
}

// GenMD4's per-token table [B, V]: the probability depends on the token's value.
func TestMaskRefPerToken(t *testing.T) {
	const B, L, V = 2, 500, 3
	x0 := make([]int32, B*L)
	randTokens(x0, V, 5)
	table := []float64{
		1, 0, 0.5, // sequence 0: token 0 always, 1 never, 2 half
		0, 1, 0, // sequence 1: only token 1
	}
	xt := make([]int32, B*L)
	if err := MaskRef(xt, x0, B, L, nil, table, V, 9, 9, rng.PurposeMask); err != nil {
		t.Fatal(err)
	}
	n2, m2 := 0, 0
	for i, x := range x0 {
		b := i / L
		masked := xt[i] == V
		p := table[b*V+int(x)]
		if (p == 1 && !masked) || (p == 0 && masked) {
			t.Fatalf("position %d (seq %d, token %d, p=%v): masked=%v", i, b, x, p, masked)
		}
		if p == 0.5 {
			n2++
			if masked {
				m2++
			}
		}
	}
	if se := math.Sqrt(0.25 * float64(n2)); math.Abs(float64(m2)-0.5*float64(n2)) > 4*se {
		t.Errorf("token 2 masked %d of %d, want half", m2, n2)
	}
	// A constant table row gives exactly the per-sequence masks.
	ts := []float64{0.3, 0.8}
	tab := make([]float64, B*V)
	GenMaskProbTable(tab, ts, []float64{1, 1, 1}, eps)
	per := []float64{GenMaskProb(0.3, 1, eps), GenMaskProb(0.8, 1, eps)}
	xa, xb := make([]int32, B*L), make([]int32, B*L)
	_ = MaskRef(xa, x0, B, L, nil, tab, V, 1, 2, rng.PurposeMask)
	_ = MaskRef(xb, x0, B, L, nil, per, V, 1, 2, rng.PurposeMask)
	for i := range xa {
		if xa[i] != xb[i] {
			t.Fatalf("constant per-token table differs from per-sequence probabilities at %d", i)
		}
	}
}
