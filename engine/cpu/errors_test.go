package cpu

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func TestDataErrors(t *testing.T) {
	b := testBackend(2)
	f32 := func(shape ...int) *ops.Tensor { return zeros(t, b, ops.F32, shape...) }
	f64 := func(vals []float64, shape ...int) *ops.Tensor { return mk(t, b, ops.F64, vals, shape...) }
	ints := func(vals []int32, shape ...int) *ops.Tensor { return mkI(t, b, vals, shape...) }
	masked := func(z []int32) *ops.Tensor { return ints(z, 1, len(z)) }

	cases := []struct {
		name      string
		op        ops.Op
		kind      error
		fragments []string
		call      func() error
	}{
		{"embed id too large", ops.OpEmbedFwd, ops.ErrValue, []string{"IDs", "id 6 at index 2", "[0, 6)"}, func() error {
			return b.EmbedFwd(&ops.EmbedParams{Out: f32(4, 3), Table: f32(6, 3), IDs: ints([]int32{0, 5, 6, 1}, 4)})
		}},
		{"embed bwd negative id", ops.OpEmbedBwd, ops.ErrValue, []string{"IDs", "id -1 at index 3"}, func() error {
			return b.EmbedBwd(&ops.EmbedBwdParams{DTable: f32(6, 3), DOut: f32(4, 3), IDs: ints([]int32{0, 5, 2, -1}, 4)})
		}},
		{"CE target = V", ops.OpMaskedCE, ops.ErrValue, []string{"Targets", "target 5 of row 1", "[0, 5)"}, func() error {
			return b.MaskedCE(&ops.MaskedCEParams{Logits: f32(2, 5), Targets: ints([]int32{0, 5}, 2), Weights: f64([]float64{1, 1}, 2), Loss: f64([]float64{0, 0}, 2)})
		}},
		{"CE negative target", ops.OpMaskedCE, ops.ErrValue, []string{"target -2 of row 0"}, func() error {
			return b.MaskedCE(&ops.MaskedCEParams{Logits: f32(2, 5), Targets: ints([]int32{-2, 1}, 2), Weights: f64([]float64{1, 1}, 2), Loss: f64([]float64{0, 0}, 2)})
		}},
		{"mask id in X0", ops.OpMaskTokens, ops.ErrValue, []string{"X0", "X0[1, 0]", "mask id 4"}, func() error {
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, 1, 4, 2}, 2, 2), MaskProb: f64([]float64{0.5, 0.5}, 2), MaskID: 4})
		}},
		{"X0 out of range", ops.OpMaskTokens, ops.ErrValue, []string{"token -3 at X0[0, 1]"}, func() error {
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, -3, 1, 2}, 2, 2), MaskProb: f64([]float64{0.5, 0.5}, 2), MaskID: 4})
		}},
		{"mask SeqLens 0", ops.OpMaskTokens, ops.ErrValue, []string{"SeqLens", "length 0 of sequence 1", "[1, 2]"}, func() error {
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, 1, 1, 2}, 2, 2), MaskProb: f64([]float64{0.5, 0.5}, 2),
				SeqLens: ints([]int32{2, 0}, 2), MaskID: 4})
		}},
		{"mask SeqLens > L", ops.OpMaskTokens, ops.ErrValue, []string{"length 3 of sequence 0"}, func() error {
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, 1, 1, 2}, 2, 2), MaskProb: f64([]float64{0.5, 0.5}, 2),
				SeqLens: ints([]int32{3, 1}, 2), MaskID: 4})
		}},
		{"MaskProb > 1", ops.OpMaskTokens, ops.ErrValue, []string{"MaskProb", "1.5 at index 1"}, func() error {
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, 1, 1, 2}, 2, 2), MaskProb: f64([]float64{0.5, 1.5}, 2), MaskID: 4})
		}},
		{"MaskProb NaN", ops.OpMaskTokens, ops.ErrValue, []string{"MaskProb", "NaN at index 5"}, func() error {
			p := []float64{0, 0.1, 0.2, 0.3, 1, math.NaN(), 0, 0}
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, 1, 1, 2}, 2, 2), MaskProb: f64(p, 2, 4), MaskID: 4})
		}},
		{"MaskProb negative", ops.OpMaskTokens, ops.ErrValue, []string{"-0.1 at index 0"}, func() error {
			return b.MaskTokens(&ops.MaskParams{XT: zeros(t, b, ops.I32, 2, 2), X0: ints([]int32{0, 1, 1, 2}, 2, 2), MaskProb: f64([]float64{-0.1, 0}, 2), MaskID: 4})
		}},
		{"attn SeqLens", ops.OpAttnFwd, ops.ErrValue, []string{"SeqLens", "length 8 of sequence 1", "[1, 7]"}, func() error {
			return b.AttnFwd(&ops.AttnParams{Q: f32(2, 7, 1, 2), K: f32(2, 7, 1, 2), V: f32(2, 7, 1, 2), Out: f32(2, 7, 1, 2), LSE: f32(2, 1, 7),
				SeqLens: ints([]int32{7, 8}, 2), Scale: 1})
		}},
		{"attn bwd SeqLens", ops.OpAttnBwd, ops.ErrValue, []string{"length 0 of sequence 0"}, func() error {
			s := []int{2, 7, 1, 2}
			return b.AttnBwd(&ops.AttnBwdParams{DQ: f32(s...), DK: f32(s...), DV: f32(s...), DOut: f32(s...), Q: f32(s...), K: f32(s...), V: f32(s...),
				Out: f32(s...), LSE: f32(2, 1, 7), SeqLens: ints([]int32{0, 8}, 2), Scale: 1})
		}},
		{"sample row out of range", ops.OpSampleStep, ops.ErrValue, []string{"Rows", "id 4 at index 1", "[0, 4)"}, func() error {
			return b.SampleStep(&ops.SampleParams{Out: masked([]int32{3, 3, 3, 3}), Z: masked([]int32{3, 3, 3, 3}), Logits: f32(2, 3),
				Rows: ints([]int32{0, 4}, 2), Mode: ops.SampleExact, MaskID: 3, PUnmask: 0.5})
		}},
		{"sample row not masked", ops.OpSampleStep, ops.ErrValue, []string{"Rows", "position 2", "holds 1", "mask id 3"}, func() error {
			return b.SampleStep(&ops.SampleParams{Out: masked([]int32{3, 3, 1, 3}), Z: masked([]int32{3, 3, 1, 3}), Logits: f32(2, 3),
				Rows: ints([]int32{0, 2}, 2), Mode: ops.SampleExact, MaskID: 3, PUnmask: 0.5})
		}},
		{"sample duplicate rows", ops.OpSampleStep, ops.ErrValue, []string{"Rows", "row 1 is repeated at indices 0 and 2"}, func() error {
			return b.SampleStep(&ops.SampleParams{Out: masked([]int32{3, 3, 3, 3}), Z: masked([]int32{3, 3, 3, 3}), Logits: f32(3, 3),
				Rows: ints([]int32{1, 3, 1}, 3), Mode: ops.SampleArgmax, MaskID: 3})
		}},
		{"sample NaN logits", ops.OpSampleStep, ops.ErrNonFinite, []string{"Logits", "row 1 (position 3)"}, func() error {
			return b.SampleStep(&ops.SampleParams{Out: masked([]int32{3, 3, 3, 3}), Z: masked([]int32{3, 3, 3, 3}),
				Logits: mk(t, b, ops.F32, []float64{0, 1, 2, 0, math.NaN(), 1}, 2, 3), Rows: ints([]int32{0, 3}, 2), Mode: ops.SampleJAXCompat, MaskID: 3, PUnmask: 0.5})
		}},
		{"scatter duplicate rows", ops.OpScatterRows, ops.ErrValue, []string{"Rows", "row 2 is repeated at indices 1 and 3"}, func() error {
			return b.ScatterRows(&ops.ScatterRowsParams{Out: f32(5, 2), In: f32(4, 2), Rows: ints([]int32{0, 2, 4, 2}, 4)})
		}},
		{"scatter row out of range", ops.OpScatterRows, ops.ErrValue, []string{"id 5 at index 0"}, func() error {
			return b.ScatterRows(&ops.ScatterRowsParams{Out: f32(5, 2), In: f32(1, 2), Rows: ints([]int32{5}, 1)})
		}},
		{"gather row out of range", ops.OpGatherRows, ops.ErrValue, []string{"Rows", "id -1 at index 1"}, func() error {
			return b.GatherRows(&ops.GatherRowsParams{Out: f32(2, 2), In: f32(5, 2), Rows: ints([]int32{0, -1}, 2)})
		}},
		{"time out of range", ops.OpTimeEmbed, ops.ErrValue, []string{"T", "time 1.5 at index 1"}, func() error {
			return b.TimeEmbed(&ops.TimeEmbedParams{Out: f32(2, 4), T: f64([]float64{0.5, 1.5}, 2), Scale: 1000})
		}},
		{"mixed dtypes", ops.OpNormFwd, ops.ErrDType, []string{"Out", "f64", "share one dtype"}, func() error {
			return b.NormFwd(&ops.NormParams{Kind: ops.RMSNorm, Eps: 1e-5, X: f32(2, 3), Out: zeros(t, b, ops.F64, 2, 3), Rstd: f32(2)})
		}},
		{"bf16 compute", ops.OpGLUFwd, ops.ErrUnsupported, []string{"bf16", "cpu"}, func() error {
			x := zeros(t, b, ops.BF16, 2, 3)
			return b.GLUFwd(&ops.GLUParams{Act: ops.Sigmoid, Out: x, A: x, B: x})
		}},
		{"freed tensor", ops.OpActFwd, ops.ErrValue, []string{"X", "freed"}, func() error {
			x := f32(2, 2)
			must(t, b.Free(x))
			return b.ActFwd(&ops.ActParams{Act: ops.Sigmoid, Out: f32(2, 2), X: x})
		}},
		{"validation first", ops.OpMatMul, ops.ErrValue, []string{"inner dimensions"}, func() error {
			return b.MatMul(&ops.MatMulParams{Out: f32(2, 2), A: f32(2, 3), B: f32(2, 2), Alpha: 1})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantOpError(t, c.call(), c.op, c.kind, c.fragments...)
		})
	}
}

func TestSampleErrorLeavesOutUnchanged(t *testing.T) {
	b := testBackend(2)
	z := []int32{3, 3, 3, 3}
	Z := mkI(t, b, z, 1, 4)
	err := b.SampleStep(&ops.SampleParams{Out: Z, Z: Z, Logits: mk(t, b, ops.F32, []float64{0, 1, 2, math.Inf(1), 0, 1}, 2, 3),
		Rows: mkI(t, b, []int32{0, 3}, 2), Mode: ops.SampleExact, MaskID: 3, PUnmask: 1})
	wantOpError(t, err, ops.OpSampleStep, ops.ErrNonFinite, "row 1")
	equalI(t, "Z after a failed step", getI(t, b, Z), z)
}

func TestHostCopyErrors(t *testing.T) {
	b := New()
	x, _ := b.Alloc(ops.F32, 2, 3)
	x.Name = "blocks.0.attn.q.weight"
	for _, c := range []struct {
		name  string
		err   error
		kind  error
		frags []string
	}{
		{"upload wrong type", b.Upload(x, []float64{1, 2, 3, 4, 5, 6}), ops.ErrDType, []string{"blocks.0.attn.q.weight", "[]float64", "[]float32"}},
		{"upload wrong length", b.Upload(x, []float32{1, 2}), ops.ErrShape, []string{"blocks.0.attn.q.weight", "2 elements, want 6"}},
		{"download wrong type", b.Download(make([]int32, 6), x), ops.ErrDType, []string{"blocks.0.attn.q.weight", "[]int32"}},
		{"download wrong length", b.Download(make([]float32, 7), x), ops.ErrShape, []string{"7 elements, want 6"}},
		{"alloc negative", func() error { _, err := b.Alloc(ops.F32, 2, -1); return err }(), ops.ErrShape, []string{"negative"}},
		{"alloc invalid dtype", func() error { _, err := b.Alloc(ops.Invalid, 2); return err }(), ops.ErrDType, []string{"invalid dtype"}},
	} {
		if c.err == nil {
			t.Errorf("%s: got nil error, want %v", c.name, c.kind)
			continue
		}
		if !errors.Is(c.err, c.kind) {
			t.Errorf("%s: got %v, want it to wrap %v", c.name, c.err, c.kind)
		}
		for _, f := range c.frags {
			if !strings.Contains(c.err.Error(), f) {
				t.Errorf("%s: error %q does not contain %q", c.name, c.err, f)
			}
		}
	}
	// A request beyond the machine's memory fails cleanly, with both sizes in the message.
	_, err := b.Alloc(ops.F64, 1<<22, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "requested") || !strings.Contains(err.Error(), "free") {
		t.Errorf("Alloc of 32 TiB: got %v, want an out-of-memory error with the requested and free bytes", err)
	}
	must(t, b.Free(x))
	if err := b.Upload(x, make([]float32, 6)); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("Upload to a freed tensor: got %v, want a 'freed' error", err)
	}
}
