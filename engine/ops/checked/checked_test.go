package checked_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/checked"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

var nan = math.NaN()

// env allocates tensors on a Null device (ops validate and do nothing) wrapped by checked.
type env struct {
	t *testing.T
	n *opstest.Null
	b ops.Backend
}

func newEnv(t *testing.T, opts ...checked.Option) *env {
	n := opstest.NewNull()
	return &env{t: t, n: n, b: checked.New(n, opts...)}
}

// f allocates a float tensor of dtype dt holding vals (zeros if nil; a single value is
// repeated).
func (e *env) f(dt ops.DType, vals []float64, shape ...int) *ops.Tensor {
	e.t.Helper()
	t, err := e.b.Alloc(dt, shape...)
	if err != nil {
		e.t.Fatal(err)
	}
	n := t.Len()
	get := func(i int) float64 {
		switch {
		case vals == nil:
			return 0
		case len(vals) == 1:
			return vals[0]
		}
		return vals[i]
	}
	var h any
	switch dt {
	case ops.F32:
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(get(i))
		}
		h = s
	case ops.BF16:
		s := make([]uint16, n)
		for i := range s {
			s[i] = opstest.BF16Bits(float32(get(i)))
		}
		h = s
	case ops.F64:
		s := make([]float64, n)
		for i := range s {
			s[i] = get(i)
		}
		h = s
	}
	if err := e.b.Upload(t, h); err != nil {
		e.t.Fatal(err)
	}
	return t
}

// f32 allocates an F32 tensor filled with v, then sets element at to x.
func (e *env) f32(v float64, at int, x float64, shape ...int) *ops.Tensor {
	e.t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = v
	}
	if at >= 0 {
		vals[at] = x
	}
	return e.f(ops.F32, vals, shape...)
}

// i allocates an I32 tensor.
func (e *env) i(vals []int32, shape ...int) *ops.Tensor {
	e.t.Helper()
	t, err := e.b.Alloc(ops.I32, shape...)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.b.Upload(t, vals); err != nil {
		e.t.Fatal(err)
	}
	return t
}

// want checks that err is an *ops.OpError of the given op, argument and kind whose
// message is exactly msg (or contains it, with a leading "~").
func want(t *testing.T, err error, op ops.Op, arg string, kind error, msg string) {
	t.Helper()
	var oe *ops.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("got %v (%T), want an *ops.OpError", err, err)
	}
	if oe.Op != op || oe.Tensor != arg || !errors.Is(err, kind) {
		t.Errorf("got op %v, argument %q, kind %v; want %v, %q, %v", oe.Op, oe.Tensor, oe.Kind, op, arg, kind)
	}
	if sub, ok := strings.CutPrefix(msg, "~"); ok {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("got message\n\t%s\nwant it to contain\n\t%s", err, sub)
		}
	} else if err.Error() != msg {
		t.Errorf("got message\n\t%s\nwant\n\t%s", err, msg)
	}
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func ids(v ...int32) []int32 { return v }

func TestValidateFirst(t *testing.T) {
	e := newEnv(t)
	x := e.f32(0, -1, 0, 4, 8)
	err := e.b.NormFwd(&ops.NormParams{Kind: ops.LayerNorm, Eps: 0, X: x, Out: e.f32(0, -1, 0, 4, 8), Mean: e.f32(0, -1, 0, 4), Rstd: e.f32(0, -1, 0, 4)})
	want(t, err, ops.OpNormFwd, "Eps", ops.ErrValue, "ops.NormFwd: Eps: invalid value: Eps must be > 0, got 0")
	err = e.b.MatMul(&ops.MatMulParams{A: x, B: e.f32(0, -1, 0, 7, 3), Out: e.f32(0, -1, 0, 4, 3), Alpha: 1})
	want(t, err, ops.OpMatMul, "B", ops.ErrValue, "~inner dimensions differ")
	if e.n.Calls[ops.OpNormFwd]+e.n.Calls[ops.OpMatMul] != 0 {
		t.Error("the wrapped backend ran an op that failed validation")
	}
}

func TestNonFinite(t *testing.T) {
	e := newEnv(t)
	// The example of the package comment: NaN in row 3, column 17.
	x := e.f32(0.5, 3*20+17, nan, 5, 20)
	err := e.b.NormFwd(&ops.NormParams{Kind: ops.LayerNorm, Eps: 1e-5, X: x, Out: e.f32(0, -1, 0, 5, 20), Mean: e.f32(0, -1, 0, 5), Rstd: e.f32(0, -1, 0, 5)})
	want(t, err, ops.OpNormFwd, "X", ops.ErrNonFinite, "ops.NormFwd: X: non-finite value: NaN at [3, 17]")

	// bf16 and float64 tensors are scanned too.
	a := e.f(ops.BF16, []float64{1, 2, math.Inf(1), 4, 5, 6}, 2, 3)
	err = e.b.MatMul(&ops.MatMulParams{A: a, B: e.f(ops.BF16, nil, 3, 2), Out: e.f(ops.BF16, nil, 2, 2), Alpha: 1})
	want(t, err, ops.OpMatMul, "A", ops.ErrNonFinite, "ops.MatMul: A: non-finite value: +Inf at [0, 2]")
	err = e.b.MaskedCE(&ops.MaskedCEParams{Logits: e.f32(0, -1, 0, 3, 5), Targets: e.i(ids(0, 1, 2), 3),
		Weights: e.f(ops.F64, []float64{1, math.Inf(-1), 1}, 3), Loss: e.f(ops.F64, nil, 3)})
	want(t, err, ops.OpMaskedCE, "Weights", ops.ErrNonFinite, "ops.MaskedCE: Weights: non-finite value: -Inf at [1]")

	// Accumulated outputs are read, so they are scanned.
	err = e.b.BiasGrad(&ops.BiasGradParams{DBias: e.f32(0, 2, nan, 4), DOut: e.f32(1, -1, 0, 3, 4)})
	want(t, err, ops.OpBiasGrad, "DBias", ops.ErrNonFinite, "ops.BiasGrad: DBias: non-finite value: NaN at [2]")
	if e.n.Calls[ops.OpNormFwd]+e.n.Calls[ops.OpMatMul]+e.n.Calls[ops.OpMaskedCE]+e.n.Calls[ops.OpBiasGrad] != 0 {
		t.Error("the wrapped backend ran an op with a non-finite input")
	}
}

// Arguments the op does not read may hold anything.
func TestUnreadInputsNotScanned(t *testing.T) {
	e := newEnv(t)
	ok(t, e.b.MatMul(&ops.MatMulParams{A: e.f32(1, -1, 0, 2, 3), B: e.f32(1, -1, 0, 3, 2), Out: e.f32(nan, -1, 0, 2, 2), Alpha: 1, Beta: 0}))
	err := e.b.MatMul(&ops.MatMulParams{A: e.f32(1, -1, 0, 2, 3), B: e.f32(1, -1, 0, 3, 2), Out: e.f32(nan, -1, 0, 2, 2), Alpha: 1, Beta: 1})
	want(t, err, ops.OpMatMul, "Out", ops.ErrNonFinite, "ops.MatMul: Out: non-finite value: NaN at [0, 0]")
	ok(t, e.b.Axpy(&ops.AxpyParams{Y: e.f32(nan, -1, 0, 7), Alpha: 0, Beta: 0}))
	// CopyCols reads only the copied columns of Src, and of Dst when accumulating.
	src := e.f32(1, 0, nan, 2, 6) // NaN at column 0, outside the copy
	ok(t, e.b.CopyCols(&ops.CopyColsParams{Dst: e.f32(nan, -1, 0, 2, 3), Src: src, SrcOff: 2, Width: 3}))
	err = e.b.CopyCols(&ops.CopyColsParams{Dst: e.f32(0, 3+1, nan, 2, 3), Src: src, SrcOff: 2, Width: 3, Accumulate: true})
	want(t, err, ops.OpCopyCols, "Dst", ops.ErrNonFinite, "ops.CopyCols: Dst: non-finite value: NaN at [1, 1]")
	err = e.b.CopyCols(&ops.CopyColsParams{Dst: e.f32(0, -1, 0, 2, 3), Src: src, SrcOff: 0, Width: 3})
	want(t, err, ops.OpCopyCols, "Src", ops.ErrNonFinite, "ops.CopyCols: Src: non-finite value: NaN at [0, 0]")
}

func TestTokenIDs(t *testing.T) {
	e := newEnv(t)
	table := e.f32(0.1, -1, 0, 28, 4) // V = 27 plus the mask row
	ok(t, e.b.EmbedFwd(&ops.EmbedParams{Out: e.f32(0, -1, 0, 3, 4), Table: table, IDs: e.i(ids(0, 27, 26), 3)}))
	err := e.b.EmbedFwd(&ops.EmbedParams{Out: e.f32(0, -1, 0, 6, 4), Table: table, IDs: e.i(ids(0, 1, 2, 3, 4, 28), 6)})
	want(t, err, ops.OpEmbedFwd, "IDs", ops.ErrValue,
		"ops.EmbedFwd: IDs: invalid value: 28 at [5] is not in [0, 28) (the table has V+1 = 28 rows; row V embeds the mask)")
	err = e.b.EmbedBwd(&ops.EmbedBwdParams{DTable: table, DOut: e.f32(0, -1, 0, 2, 4), IDs: e.i(ids(-1, 0), 2)})
	want(t, err, ops.OpEmbedBwd, "IDs", ops.ErrValue, "ops.EmbedBwd: IDs: invalid value: -1 at [0] is not in [0, 28) (the table has V+1 = 28 rows)")

	logits := e.f32(0, -1, 0, 3, 27)
	ce := func(tg ...int32) error {
		return e.b.MaskedCE(&ops.MaskedCEParams{Logits: logits, Targets: e.i(tg, 3), Weights: e.f(ops.F64, []float64{1}, 3), Loss: e.f(ops.F64, nil, 3)})
	}
	ok(t, ce(0, 26, 5))
	want(t, ce(0, 1, 27), ops.OpMaskedCE, "Targets", ops.ErrValue,
		"ops.MaskedCE: Targets: invalid value: 27 at [2] is not in [0, 27) (V = 27; a target is never the mask id or a padding column)")
}

func TestMaskTokens(t *testing.T) {
	e := newEnv(t)
	mask := func(x0 []int32, prob []float64, lens []int32) error {
		p := &ops.MaskParams{XT: e.i(make([]int32, 12), 2, 6), X0: e.i(x0, 2, 6), MaskProb: e.f(ops.F64, prob, 2), MaskID: 27, Seed: 1}
		if lens != nil {
			p.SeqLens = e.i(lens, 2)
		}
		return e.b.MaskTokens(p)
	}
	clean := ids(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 26)
	ok(t, mask(clean, []float64{0, 1}, ids(6, 1)))
	bad := append([]int32(nil), clean...)
	bad[6+5] = 27
	want(t, mask(bad, []float64{0, 1}, nil), ops.OpMaskTokens, "X0", ops.ErrValue,
		"ops.MaskTokens: X0: invalid value: 27 at [1, 5] is the mask id; x0 must hold clean tokens in [0, 27)")
	bad[6+5] = -3
	want(t, mask(bad, []float64{0, 1}, nil), ops.OpMaskTokens, "X0", ops.ErrValue,
		"ops.MaskTokens: X0: invalid value: -3 at [1, 5] is not in [0, 27)")
	want(t, mask(clean, []float64{0.5, 1.5}, nil), ops.OpMaskTokens, "MaskProb", ops.ErrValue,
		"ops.MaskTokens: MaskProb: invalid value: 1.5 at [1] is not a masking probability in [0, 1]")
	want(t, mask(clean, []float64{nan, 0.5}, nil), ops.OpMaskTokens, "MaskProb", ops.ErrNonFinite,
		"ops.MaskTokens: MaskProb: non-finite value: NaN at [0]")
	want(t, mask(clean, []float64{0, 1}, ids(6, 0)), ops.OpMaskTokens, "SeqLens", ops.ErrValue,
		"ops.MaskTokens: SeqLens: invalid value: 0 at [1] is not in [1, 6] (a sequence has at least one real position and at most L)")
}

func TestSeqLensAttn(t *testing.T) {
	e := newEnv(t)
	q := e.f32(0.1, -1, 0, 2, 5, 1, 4)
	attn := func(lens ...int32) error {
		return e.b.AttnFwd(&ops.AttnParams{Out: e.f32(0, -1, 0, 2, 5, 1, 4), LSE: e.f32(0, -1, 0, 2, 1, 5), Q: q, K: q, V: q, SeqLens: e.i(lens, 2), Scale: 0.5})
	}
	ok(t, attn(5, 1))
	want(t, attn(6, 1), ops.OpAttnFwd, "SeqLens", ops.ErrValue, "~6 at [0] is not in [1, 5]")
	err := e.b.AttnBwd(&ops.AttnBwdParams{DQ: q, DK: q, DV: q, DOut: q, Q: q, K: q, V: q, Out: q, LSE: e.f32(0, 7, math.Inf(1), 2, 1, 5), Scale: 1})
	want(t, err, ops.OpAttnBwd, "LSE", ops.ErrNonFinite, "ops.AttnBwd: LSE: non-finite value: +Inf at [1, 0, 2]")
}

func TestSampleStep(t *testing.T) {
	e := newEnv(t)
	const v = 27
	z := ids(3, v, v, 5, v, 0) // B = 2, L = 3; positions 1, 2, 4 masked
	sample := func(z []int32, rows []int32, logits *ops.Tensor) error {
		if logits == nil {
			logits = e.f32(0.5, -1, 0, len(rows), v)
		}
		zt := e.i(z, 2, 3)
		return e.b.SampleStep(&ops.SampleParams{Out: zt, Z: zt, Logits: logits, Rows: e.i(rows, len(rows)), PUnmask: 0.5, Mode: ops.SampleExact, MaskID: v})
	}
	ok(t, sample(z, ids(4, 1, 2), nil))
	want(t, sample(z, ids(4, 6), nil), ops.OpSampleStep, "Rows", ops.ErrValue, "ops.SampleStep: Rows: invalid value: 6 at [1] is not in [0, 6) (Z has B·L = 6 positions)")
	want(t, sample(z, ids(4, 1, 4), nil), ops.OpSampleStep, "Rows", ops.ErrValue,
		"ops.SampleStep: Rows: invalid value: row 4 appears at [0] and at [2]; rows must be distinct")
	want(t, sample(z, ids(1, 3), nil), ops.OpSampleStep, "Rows", ops.ErrValue,
		"ops.SampleStep: Rows: invalid value: position 3 (Rows[1]) holds token 5 in Z, not the mask id 27; only masked positions may be sampled")
	want(t, sample(ids(3, v, v, 5, v+1, 0), ids(1), nil), ops.OpSampleStep, "Z", ops.ErrValue,
		"ops.SampleStep: Z: invalid value: 28 at [1, 1] is neither a token in [0, 27) nor the mask id 27")
	// −Inf marks a suppressed token and is allowed; NaN, +Inf and all-−Inf rows are not.
	ok(t, sample(z, ids(1, 2), e.f32(0.5, v+3, math.Inf(-1), 2, v)))
	want(t, sample(z, ids(1, 2), e.f32(0.5, v+3, nan, 2, v)), ops.OpSampleStep, "Logits", ops.ErrNonFinite,
		"ops.SampleStep: Logits: non-finite value: NaN at [1, 3]")
	want(t, sample(z, ids(1, 2), e.f32(0.5, 4, math.Inf(1), 2, v)), ops.OpSampleStep, "Logits", ops.ErrNonFinite,
		"ops.SampleStep: Logits: non-finite value: +Inf at [0, 4]")
	allNegInf := make([]float64, 2*v)
	for j := v; j < 2*v; j++ {
		allNegInf[j] = math.Inf(-1)
	}
	want(t, sample(z, ids(1, 2), e.f(ops.F32, allNegInf, 2, v)), ops.OpSampleStep, "Logits", ops.ErrNonFinite,
		"ops.SampleStep: Logits: non-finite value: row 1 is −Inf everywhere: no token can be drawn")
}

func TestRows(t *testing.T) {
	e := newEnv(t)
	in := e.f32(1, -1, 0, 4, 3)
	ok(t, e.b.GatherRows(&ops.GatherRowsParams{Out: e.f32(0, -1, 0, 3, 3), In: in, Rows: e.i(ids(3, 3, 0), 3)}))
	err := e.b.GatherRows(&ops.GatherRowsParams{Out: e.f32(0, -1, 0, 2, 3), In: in, Rows: e.i(ids(0, 4), 2)})
	want(t, err, ops.OpGatherRows, "Rows", ops.ErrValue, "ops.GatherRows: Rows: invalid value: 4 at [1] is not in [0, 4) (In has 4 rows)")
	err = e.b.ScatterRows(&ops.ScatterRowsParams{Out: in, In: e.f32(1, -1, 0, 3, 3), Rows: e.i(ids(2, 0, 2), 3)})
	want(t, err, ops.OpScatterRows, "Rows", ops.ErrValue, "ops.ScatterRows: Rows: invalid value: row 2 appears at [0] and at [2]; rows must be distinct")
}

func TestScalarsInRange(t *testing.T) {
	e := newEnv(t)
	err := e.b.TimeEmbed(&ops.TimeEmbedParams{Out: e.f32(0, -1, 0, 3, 4), T: e.f(ops.F64, []float64{0, 1, 1.25}, 3), Scale: 1000})
	want(t, err, ops.OpTimeEmbed, "T", ops.ErrValue, "ops.TimeEmbed: T: invalid value: 1.25 at [2] is not a time in [0, 1]")
	p := e.f32(0.1, -1, 0, 5)
	err = e.b.AdamW(&ops.AdamWParams{Param: p, Grad: p, M: p, V: e.f32(0.1, 3, -1e-3, 5), LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1, GradScale: 1})
	want(t, err, ops.OpAdamW, "V", ops.ErrValue, "ops.AdamW: V: invalid value: -0.001 at [3] is negative; second moments are ≥ 0")
}

// TestScanOutputs: a backend that produces a NaN from finite inputs is caught only with
// the option.
func TestScanOutputs(t *testing.T) {
	n := opstest.NewNull()
	bad := opstest.Intercept(n, func(op ops.Op, p any, call func() error) error {
		if err := call(); err != nil {
			return err
		}
		out := p.(*ops.GLUParams).Out
		h := make([]float32, out.Len())
		h[1] = float32(math.Inf(-1))
		return n.Upload(out, h)
	})
	for _, scanOut := range []bool{false, true} {
		var opts []checked.Option
		if scanOut {
			opts = append(opts, checked.ScanOutputs())
		}
		e := &env{t: t, n: n, b: checked.New(bad, opts...)}
		a := e.f32(1, -1, 0, 2, 3)
		err := e.b.GLUFwd(&ops.GLUParams{Act: ops.Sigmoid, Out: e.f32(0, -1, 0, 2, 3), A: a, B: a})
		if !scanOut {
			ok(t, err)
			continue
		}
		want(t, err, ops.OpGLUFwd, "Out", ops.ErrNonFinite, "ops.GLUFwd: Out: non-finite value: -Inf at [0, 1] (produced by the op from finite inputs)")
	}
}

// countingDevice counts downloads, to prove that checked intercepts every op (a method
// it forgot would be promoted from the embedded backend and download nothing).
type countingDevice struct {
	ops.Backend
	downloads int
}

func (c *countingDevice) Download(dst any, src *ops.Tensor) error {
	c.downloads++
	return c.Backend.Download(dst, src)
}

func TestEveryOpIsChecked(t *testing.T) {
	done := map[ops.Op]bool{}
	for _, c := range opstest.Cases() {
		if done[c.Op] || c.DType == ops.BF16 || c.Size == opstest.Large {
			continue
		}
		cd := &countingDevice{Backend: opstest.NewNull()}
		inst, err := c.Setup(checked.New(cd))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		cd.downloads = 0
		err = inst.Run()
		if c.Op == ops.OpConvert {
			// The Convert cases convert NaN and ±Inf on purpose; checked reports them.
			if !errors.Is(err, ops.ErrNonFinite) {
				t.Errorf("%s: got %v, want a non-finite input reported", c.Name, err)
			}
		} else if err != nil {
			t.Errorf("%s: checked rejected a valid case: %v", c.Name, err)
		}
		inst.Free()
		if cd.downloads == 0 {
			t.Errorf("%s: checked did not scan any input: is %v wrapped?", c.Name, c.Op)
		}
		done[c.Op] = true
	}
	if len(done) != len(ops.AllOps()) {
		t.Errorf("checked %d ops, want %d", len(done), len(ops.AllOps()))
	}
}

// TestParityThroughChecked runs the F32 table through checked (with output scans) around
// the CPU backend: the wrapper accepts every valid input and changes no result.
func TestParityThroughChecked(t *testing.T) {
	opstest.Run(t, cpu.New(), checked.New(cpu.New(), checked.ScanOutputs()), opstest.Options{
		Short:  true,
		Filter: func(c opstest.Case) bool { return c.DType != ops.BF16 && c.Op != ops.OpConvert },
	})
}

type guarded struct{ ops.Backend }

func (guarded) CheckGuards() error { return nil }

func TestUnwrap(t *testing.T) {
	if opstest.FindGuardChecker(checked.New(guarded{opstest.NewNull()})) == nil {
		t.Fatal("the GuardChecker of the wrapped backend is not found through checked")
	}
}
