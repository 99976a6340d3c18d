package rng

import (
	"math"
	"testing"
)

// Known-answer vectors for Philox4x32-10 from Random123 (kat_vectors, "philox4x32 10").
func TestPhiloxKnownAnswers(t *testing.T) {
	cases := []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0},
			[4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff},
			[4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0},
			[4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for i, c := range cases {
		if got := Philox4x32(c.ctr, c.key); got != c.want {
			t.Errorf("vector %d: got %08x, want %08x", i, got, c.want)
		}
	}
}

func TestAddressLayout(t *testing.T) {
	seed := uint64(0x0123456789abcdef)
	step := uint64(0x00aabbccddeeff11)
	idx := uint64(0x1122334455667788)
	got := Words(seed, step, PurposeMask, idx)
	want := Philox4x32([4]uint32{0x55667788, 0x11223344, 0xddeeff11, 0x02aabbcc}, [2]uint32{0x89abcdef, 0x01234567})
	if got != want {
		t.Fatalf("Words layout: got %08x, want %08x", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("step ≥ 2^56 did not panic")
		}
	}()
	Words(1, 1<<56, PurposeMask, 0)
}

func TestUniformRangeAndMoments(t *testing.T) {
	const n = 200000
	var s, s2 float64
	for i := uint64(0); i < n; i++ {
		u := Uniform64(7, 3, PurposeTime, i)
		if u < 0 || u >= 1 {
			t.Fatalf("Uniform64 out of [0,1): %v", u)
		}
		s += u
		s2 += u * u
	}
	mean, variance := s/n, s2/n-(s/n)*(s/n)
	// Standard error of the mean is sqrt(1/12/n) ≈ 6.5e-4; allow 5 SE.
	if math.Abs(mean-0.5) > 5*math.Sqrt(1.0/12/n) {
		t.Errorf("mean %v, want 0.5", mean)
	}
	if math.Abs(variance-1.0/12) > 2e-3 {
		t.Errorf("variance %v, want 1/12", variance)
	}
	if u53(0, 0) != 0 || u53(0xffffffff, 0xffffffff) != 1-0x1p-53 {
		t.Errorf("u53 extremes wrong: %v %v", u53(0, 0), u53(0xffffffff, 0xffffffff))
	}
}

func TestPurposesAreIndependentStreams(t *testing.T) {
	a := Words(1, 2, PurposeMask, 3)
	b := Words(1, 2, PurposeSampleToken, 3)
	c := Words(1, 3, PurposeMask, 3)
	if a == b || a == c {
		t.Fatal("different addresses gave the same words")
	}
}

func TestUniform32JAXGrid(t *testing.T) {
	for i := uint64(0); i < 10000; i++ {
		u := Uniform32JAX(5, 0, PurposeSampleToken, i)
		if !(u > 0 && u < 1) {
			t.Fatalf("out of (0,1): %v", u)
		}
		if k := float64(u) * (1 << 23); k != math.Trunc(k) && u != 0x1p-126 {
			t.Fatalf("%v is not on the 2^-23 grid", u)
		}
	}
}

func TestNormal64Moments(t *testing.T) {
	const n = 100000
	var s, s2 float64
	for i := uint64(0); i < n; i++ {
		z := Normal64(11, 0, PurposeInit, i)
		if math.IsInf(z, 0) || math.IsNaN(z) {
			t.Fatal("non-finite normal")
		}
		s += z
		s2 += z * z
	}
	if m := s / n; math.Abs(m) > 5/math.Sqrt(n) {
		t.Errorf("mean %v", m)
	}
	if v := s2 / n; math.Abs(v-1) > 0.02 {
		t.Errorf("variance %v", v)
	}
}
