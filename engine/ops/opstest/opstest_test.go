package opstest_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

func TestCoverage(t *testing.T) {
	if err := opstest.Coverage(opstest.Cases()); err != nil {
		t.Fatal(err)
	}
	var some []opstest.Case
	for _, c := range opstest.Cases() {
		if c.Op != ops.OpAttnBwd && c.Op != ops.OpTimeEmbed {
			some = append(some, c)
		}
	}
	err := opstest.Coverage(some)
	if err == nil || !strings.Contains(err.Error(), "AttnBwd, TimeEmbed") {
		t.Fatalf("Coverage without AttnBwd and TimeEmbed cases: got %v, want an error naming both", err)
	}
}

// TestTable checks the table's bookkeeping: unique names that carry the dtype, perf
// numbers, and the shapes the brief asks for.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	perOp := map[ops.Op]int{}
	var large int
	for _, c := range opstest.Cases() {
		if seen[c.Name] {
			t.Errorf("duplicate case name %s", c.Name)
		}
		seen[c.Name] = true
		perOp[c.Op]++
		if !strings.HasPrefix(c.Name, c.Op.String()+"(") {
			t.Errorf("case %s does not start with its op %v", c.Name, c.Op)
		}
		if c.Size == opstest.Large {
			large++
		}
		if c.Bytes < 0 || c.FLOPs < 0 {
			t.Errorf("case %s: negative FLOPs %d or Bytes %d", c.Name, c.FLOPs, c.Bytes)
		}
		if len(c.Args()) == 0 {
			t.Errorf("case %s has no arguments", c.Name)
		}
	}
	for _, want := range []string{
		"AttnFwd(b=2,l=97,h=4,dh=64,pad=yes,dt=f32)",
		"AttnBwd(b=1,l=1025,h=2,dh=64,pad=yes,dt=bf16)",
		"AttnFwd(b=1,l=257,h=2,dh=128,pad=yes,dt=bf16)",
		"AttnFwd(b=2,l=5,h=3,dh=7,pad=yes,dt=f32)",
		"MaskedCE(r=0,v=27,dlogits=yes,dt=f32)",
		"MaskedCE(r=64,v=50257,dlogits=yes,lscale=2,dt=f32)",
		"SampleStep(b=2,l=33,v=27,mode=exact-f64,punmask=0,dt=f32)",
		"SampleStep(b=2,l=33,v=27,mode=exact-f64,punmask=1,inplace=yes,dt=f32)",
		"SampleStep(b=1,l=64,v=50257,mode=exact-f64,punmask=0.5,dt=f32)",
		"MaskTokens(b=4,l=97,v=27,prob=per-seq,pad=yes,purpose=2)",
	} {
		if !seen[want] {
			t.Errorf("missing case %s", want)
		}
	}
	if large == 0 {
		t.Error("no large cases")
	}
	t.Logf("%d cases (%d large); per op: %v", len(seen), large, perOp)
}

// TestInputsDeterministic checks that a case's inputs depend only on the case.
func TestInputsDeterministic(t *testing.T) {
	c := findCase(t, "AttnBwd(b=2,l=97,h=4,dh=64,pad=yes,dt=f32)")
	b := cpu.New()
	var first map[string][]float32
	for run := 0; run < 2; run++ {
		inst, err := c.Setup(b)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]float32{}
		for name, ten := range inst.Tensors() {
			if ten.DType() != ops.F32 {
				continue
			}
			h := make([]float32, ten.Len())
			if err := b.Download(h, ten); err != nil {
				t.Fatal(err)
			}
			got[name] = h
		}
		if err := inst.Run(); err != nil {
			t.Fatal(err)
		}
		inst.Free()
		if run == 1 && !reflect.DeepEqual(fmt.Sprint(first), fmt.Sprint(got)) {
			t.Fatal("two Setups of one case uploaded different inputs")
		}
		first = got
	}
}

// TestParityCPU runs the whole table with the CPU backend as both reference and device:
// every F32 case must pass, BF16 cases are unsupported (the CPU computes in f32/f64).
func TestParityCPU(t *testing.T) {
	opstest.Run(t, cpu.New(), cpu.New(), opstest.Options{})
}

// TestParityCPUF64Reference runs the F32 cases against a float64 reference, which
// exercises the F32 tolerances on real rounding differences.
func TestParityCPUF64Reference(t *testing.T) {
	opstest.Run(t, cpu.New(), cpu.New(), opstest.Options{RefDType: ops.F64,
		Filter: func(c opstest.Case) bool { return c.DType != ops.BF16 }})
}

func findCase(t *testing.T, name string) opstest.Case {
	t.Helper()
	for _, c := range opstest.Cases() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no case %s", name)
	return opstest.Case{}
}

func only(names ...string) func(opstest.Case) bool {
	return func(c opstest.Case) bool {
		for _, n := range names {
			if c.Name == n {
				return true
			}
		}
		return false
	}
}

// field returns the tensor in Params field name of p.
func field(p any, name string) *ops.Tensor {
	return reflect.ValueOf(p).Elem().FieldByName(name).Interface().(*ops.Tensor)
}

// edit downloads t, applies f to its host copy and uploads it again.
func edit(b ops.Backend, t *ops.Tensor, f func(h any)) error {
	var h any
	switch t.DType() {
	case ops.F32:
		h = make([]float32, t.Len())
	case ops.BF16:
		h = make([]uint16, t.Len())
	case ops.F64:
		h = make([]float64, t.Len())
	case ops.I32:
		h = make([]int32, t.Len())
	}
	if err := b.Download(h, t); err != nil {
		return err
	}
	f(h)
	return b.Upload(t, h)
}

// ulp moves element k of a host buffer by one unit in the last place (or one, for ints).
func ulp(k int) func(h any) {
	return func(h any) {
		switch s := h.(type) {
		case []float32:
			s[k] = math.Nextafter32(s[k], float32(math.Inf(1)))
		case []uint16:
			s[k]++
		case []float64:
			s[k] = math.Nextafter(s[k], math.Inf(1))
		case []int32:
			s[k]++
		}
	}
}

// perturb returns a DUT that runs op and then applies f to output field of op's Params,
// on every call (when) or only on some.
func perturb(b ops.Backend, op ops.Op, output string, f func(h any), when func(call int) bool) ops.Backend {
	calls := 0
	return opstest.Intercept(b, func(o ops.Op, p any, call func() error) error {
		if err := call(); err != nil || o != op {
			return err
		}
		calls++
		if when != nil && !when(calls) {
			return nil
		}
		return edit(b, field(p, output), f)
	})
}

func wantFail(t *testing.T, err error, substrings ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Check passed; want a failure mentioning %q", substrings)
	}
	for _, s := range substrings {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q\ndoes not mention %q", err, s)
		}
	}
}

// The harness must be able to fail: each fault below makes Check fail with a message
// that names the case, the output, the element and the values.
func TestHarnessCatchesFaults(t *testing.T) {
	ref := cpu.New()
	mm := "MatMul(m=65,n=31,k=129,ta=no,tb=no,alpha=0.5,beta=1,out=f32,dt=f32)"
	conv := "Convert(n=1031,from=f32,to=bf16)"
	mask := "MaskTokens(b=4,l=97,v=27,prob=per-seq,pad=yes,purpose=2)"
	sample := "SampleStep(b=2,l=97,v=27,mode=exact-f64,punmask=0.37,dt=f32)"
	attn := "AttnFwd(b=2,l=97,h=4,dh=64,pad=yes,dt=f32)"

	t.Run("ulp-on-exact-output", func(t *testing.T) {
		dut := perturb(cpu.New(), ops.OpConvert, "Out", ulp(7), nil)
		wantFail(t, opstest.Check(ref, dut, only(conv), opstest.Options{}),
			conv, "output Out must match exactly", "1 of 1031 elements differ", "at [7]")
	})
	t.Run("ulp-on-integer-output", func(t *testing.T) {
		dut := perturb(cpu.New(), ops.OpMaskTokens, "XT", ulp(100), nil)
		wantFail(t, opstest.Check(ref, dut, only(mask), opstest.Options{}), mask, "output XT must match exactly", "at [1, 3]")
		dut = perturb(cpu.New(), ops.OpSampleStep, "Out", ulp(0), nil)
		wantFail(t, opstest.Check(ref, dut, only(sample), opstest.Options{}), sample, "output Out must match exactly", "at [0, 0]")
	})
	t.Run("ulp-within-f32-tolerance", func(t *testing.T) {
		// One ulp on a float32 output is rounding noise: the tolerance accepts it...
		dut := perturb(cpu.New(), ops.OpMatMul, "Out", ulp(5), nil)
		if err := opstest.Check(ref, dut, only(mm), opstest.Options{}); err != nil {
			t.Fatalf("one ulp on a float32 MatMul output failed: %v", err)
		}
	})
	t.Run("error-beyond-f32-tolerance", func(t *testing.T) {
		dut := perturb(cpu.New(), ops.OpMatMul, "Out", func(h any) { h.([]float32)[40] *= 1.001 }, nil)
		wantFail(t, opstest.Check(ref, dut, only(mm), opstest.Options{}), mm, "output Out: 1 of 2015 elements exceed", "worst at [1, 9]")
		dut = perturb(cpu.New(), ops.OpAttnFwd, "LSE", func(h any) {
			for i := range h.([]float32) {
				h.([]float32)[i] *= 1 + 2e-5
			}
		}, nil)
		wantFail(t, opstest.Check(ref, dut, only(attn), opstest.Options{}), attn, "output LSE")
	})
	t.Run("nondeterministic", func(t *testing.T) {
		// ...but not when it differs between two runs on the same inputs.
		dut := perturb(cpu.New(), ops.OpMatMul, "Out", ulp(5), func(call int) bool { return call%2 == 0 })
		wantFail(t, opstest.Check(ref, dut, only(mm), opstest.Options{}),
			mm, "not deterministic: output Out differs between two runs", "at [0, 5]", "bits 0x")
	})
	t.Run("nan-output", func(t *testing.T) {
		dut := perturb(cpu.New(), ops.OpAttnFwd, "Out", func(h any) { h.([]float32)[3] = float32(math.NaN()) }, nil)
		wantFail(t, opstest.Check(ref, dut, only(attn), opstest.Options{}), "output Out: 1 of", "non-finite", "at [0, 0, 0, 3]")
	})
	t.Run("modifies-input", func(t *testing.T) {
		dut := perturb(cpu.New(), ops.OpAttnFwd, "K", ulp(0), nil)
		wantFail(t, opstest.Check(ref, dut, only(attn), opstest.Options{}), "the op modified its input K", "at [0, 0, 0, 0]")
	})
	t.Run("op-error", func(t *testing.T) {
		dut := opstest.Intercept(cpu.New(), func(o ops.Op, p any, call func() error) error {
			return ops.Errorf(o, "Q", ops.ErrValue, "launch failed")
		})
		wantFail(t, opstest.Check(ref, dut, only(attn), opstest.Options{}), "run 1: the op failed: ops.AttnFwd: Q: invalid value: launch failed")
	})
	t.Run("panic", func(t *testing.T) {
		dut := opstest.Intercept(cpu.New(), func(o ops.Op, p any, call func() error) error { panic("kernel exploded") })
		wantFail(t, opstest.Check(ref, dut, only(attn), opstest.Options{}), "panic: kernel exploded")
	})
	t.Run("sync-error", func(t *testing.T) {
		dut := &syncFails{Backend: cpu.New()}
		wantFail(t, opstest.Check(ref, dut, only(attn), opstest.Options{}), "Sync after the op: illegal address in attn_fwd_f32")
	})
}

type syncFails struct{ ops.Backend }

func (s *syncFails) Sync() error { return errors.New("illegal address in attn_fwd_f32") }

// guarded simulates a device whose allocator surrounds buffers with canaries: a faulty
// op "writes one element past the end" of its output, which CheckGuards reports.
type guarded struct {
	ops.Backend
	damaged string
}

func (g *guarded) CheckGuards() error {
	if d := g.damaged; d != "" {
		g.damaged = ""
		return fmt.Errorf("guard band after %s overwritten at element +0 (canary 0x7fc0dead, found 0x3f800000)", d)
	}
	return nil
}

func TestGuardBands(t *testing.T) {
	ref := cpu.New()
	name := "GLUFwd(n=97,hm=129,act=swish,dt=f32)"
	g := &guarded{Backend: cpu.New()}
	dut := opstest.Intercept(g, func(o ops.Op, p any, call func() error) error {
		err := call()
		if o == ops.OpGLUFwd {
			g.damaged = field(p, "Out").String()
		}
		return err
	})
	// Without Guard the out-of-bounds write is invisible to the comparison.
	if err := opstest.Check(ref, dut, only(name), opstest.Options{}); err != nil {
		t.Fatalf("without Guard: %v", err)
	}
	g.damaged = ""
	wantFail(t, opstest.Check(ref, dut, only(name), opstest.Options{Guard: true}),
		name, "run 1: guard band damaged (out-of-bounds write): guard band after Out f32[97 129] overwritten")

	// A device without a GuardChecker is noted, not passed silently and not failed.
	var res []opstest.Result
	if err := opstest.Check(ref, cpu.New(), only(name), opstest.Options{Guard: true, Report: func(r opstest.Result) { res = append(res, r) }}); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Notes) != 1 || !strings.Contains(res[0].Notes[0], "guard bands not checked") {
		t.Fatalf("got results %+v, want one with a note that guards were not checked", res)
	}
}

// unsupporting claims no AttnFwd and fails RoPE with ErrUnsupported at run time.
type unsupporting struct{ ops.Backend }

func (u *unsupporting) Supports(op ops.Op, dt ops.DType) bool {
	return op != ops.OpAttnFwd && u.Backend.Supports(op, dt)
}

func (u *unsupporting) RoPE(p *ops.RoPEParams) error {
	return ops.Unsupported(ops.OpRoPE, "test", "no RoPE today")
}

func TestUnsupported(t *testing.T) {
	ref := cpu.New()
	dut := &unsupporting{cpu.New()}
	attn := "AttnFwd(b=2,l=97,h=4,dh=64,pad=yes,dt=f32)"
	rope := "RoPE(b=2,l=97,h=3,dh=64,inverse=no,inplace=no,dt=f32)"
	var res []opstest.Result
	err := opstest.Check(ref, dut, only(attn, rope), opstest.Options{Report: func(r opstest.Result) { res = append(res, r) }})
	if err != nil {
		t.Fatalf("unsupported cases must not fail by default: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("got %d results, want 2", len(res))
	}
	for _, r := range res {
		if r.Status != opstest.Unsupported {
			t.Errorf("%s: status %v, want UNSUPPORTED", r.Case.Name, r.Status)
		}
	}
	why := map[string]string{}
	for _, r := range res {
		why[r.Case.Name] = r.Err.Error()
	}
	if !strings.Contains(why[attn], "Supports(AttnFwd, f32) = false") || !strings.Contains(why[rope], "no RoPE today") {
		t.Errorf("unexpected reasons: %v", why)
	}
	wantFail(t, opstest.Check(ref, dut, only(attn, rope), opstest.Options{FailUnsupported: true}),
		"0 of 2 cases failed, 2 unsupported", attn+": unsupported", rope+": unsupported")
}

func TestNoCaseSelected(t *testing.T) {
	wantFail(t, opstest.Check(cpu.New(), cpu.New(), only("NoSuchOp(x=1)"), opstest.Options{}), "no case matches")
}

func TestShort(t *testing.T) {
	var res []opstest.Result
	large := "MaskedCE(r=64,v=50257,dlogits=yes,lscale=2,dt=f32)"
	if err := opstest.Check(cpu.New(), cpu.New(), only(large), opstest.Options{Short: true, Report: func(r opstest.Result) { res = append(res, r) }}); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Status != opstest.Skipped {
		t.Fatalf("got %+v, want the large case skipped", res)
	}
}

// BenchmarkCPU times every large F32 case on the CPU backend.
func BenchmarkCPU(b *testing.B) {
	be := cpu.New()
	for _, c := range opstest.Cases() {
		if c.Size != opstest.Large || c.DType != ops.F32 {
			continue
		}
		b.Run(c.Name, func(b *testing.B) { opstest.BenchCase(b, be, c) })
	}
}
