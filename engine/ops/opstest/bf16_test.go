package opstest_test

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

// bf16Device makes an F32 backend look like a device with bf16 storage: a BF16 tensor is
// an F32 tensor of the inner backend holding bf16-representable values, and every op
// rounds its BF16 arguments to bf16 after computing in F32. That is exactly the honest
// low-precision reference, so it must pass the BF16 cases; with a fault it must not.
type bf16Device struct {
	ops.Backend
}

var tensorType = reflect.TypeOf((*ops.Tensor)(nil))

func (d *bf16Device) inner(t *ops.Tensor) *ops.Tensor {
	if t != nil && t.DType() == ops.BF16 {
		return t.Storage.(*ops.Tensor)
	}
	return t
}

func (d *bf16Device) Name() string { return "bf16-emulated " + d.Backend.Name() }

func (d *bf16Device) Supports(op ops.Op, dt ops.DType) bool {
	if dt == ops.BF16 {
		dt = ops.F32
	}
	return d.Backend.Supports(op, dt)
}

func (d *bf16Device) Alloc(dt ops.DType, shape ...int) (*ops.Tensor, error) {
	if dt != ops.BF16 {
		return d.Backend.Alloc(dt, shape...)
	}
	in, err := d.Backend.Alloc(ops.F32, shape...)
	if err != nil {
		return nil, err
	}
	return ops.NewTensor(d, ops.BF16, shape, in)
}

func (d *bf16Device) Free(t *ops.Tensor) error { return d.Backend.Free(d.inner(t)) }

func (d *bf16Device) Upload(dst *ops.Tensor, src any) error {
	if dst.DType() != ops.BF16 {
		return d.Backend.Upload(dst, src)
	}
	h := src.([]uint16)
	f := make([]float32, len(h))
	for i, v := range h {
		f[i] = opstest.BF16Float(v)
	}
	return d.Backend.Upload(d.inner(dst), f)
}

func (d *bf16Device) Download(dst any, src *ops.Tensor) error {
	if src.DType() != ops.BF16 {
		return d.Backend.Download(dst, src)
	}
	f := make([]float32, src.Len())
	if err := d.Backend.Download(f, d.inner(src)); err != nil {
		return err
	}
	h := dst.([]uint16)
	for i, v := range f {
		h[i] = opstest.BF16Bits(v)
	}
	return nil
}

// hook swaps BF16 handles for their F32 tensors during the call and rounds them after.
func (d *bf16Device) hook(fault func(op ops.Op, p any) error) opstest.Hook {
	return func(op ops.Op, p any, call func() error) error {
		v := reflect.ValueOf(p).Elem()
		var bf []*ops.Tensor
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if f.Type() != tensorType || f.IsNil() {
				continue
			}
			t := f.Interface().(*ops.Tensor)
			if t.DType() == ops.BF16 {
				f.Set(reflect.ValueOf(d.inner(t)))
				defer f.Set(reflect.ValueOf(t))
				bf = append(bf, d.inner(t))
			}
		}
		if err := call(); err != nil {
			return err
		}
		for _, t := range bf {
			if err := edit(d.Backend, t, func(h any) {
				for i, x := range h.([]float32) {
					h.([]float32)[i] = opstest.BF16Float(opstest.BF16Bits(x))
				}
			}); err != nil {
				return err
			}
		}
		if fault != nil {
			return fault(op, p)
		}
		return nil
	}
}

func bf16DUT(fault func(d *bf16Device) func(op ops.Op, p any) error) ops.Backend {
	d := &bf16Device{Backend: cpu.New()}
	var f func(op ops.Op, p any) error
	if fault != nil {
		f = fault(d)
	}
	return opstest.Intercept(d, d.hook(f))
}

func isBF16(c opstest.Case) bool { return c.DType == ops.BF16 && c.Op != ops.OpConvert }

// TestBF16Path runs every BF16 case against the emulated bf16 device: the FlashAttention
// rule (at most 2× the honest reference's error against the float64 oracle) holds.
func TestBF16Path(t *testing.T) {
	var n int
	opstest.Run(t, cpu.New(), bf16DUT(nil), opstest.Options{Filter: isBF16, Report: func(r opstest.Result) {
		if r.Status == opstest.Passed {
			n++
		}
	}})
	if n == 0 {
		t.Fatal("no BF16 case passed")
	}
}

// TestBF16CatchesError moves the largest-magnitude element of one bf16 output by two bf16
// ulps: that is more than twice the honest reference's error, so the case fails.
func TestBF16CatchesError(t *testing.T) {
	for _, tc := range []struct {
		name, output string
		op           ops.Op
	}{
		{"AttnFwd(b=2,l=97,h=4,dh=64,pad=yes,dt=bf16)", "Out", ops.OpAttnFwd},
		{"NormBwd(kind=layernorm,b=2,l=97,d=129,mod=yes,weight=no,dt=bf16)", "DX", ops.OpNormBwd},
		{"MatMul(m=7,n=13,k=97,ta=no,tb=yes,alpha=1,beta=0,out=bf16,dt=bf16)", "Out", ops.OpMatMul},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dut := bf16DUT(func(d *bf16Device) func(op ops.Op, p any) error {
				return func(op ops.Op, p any) error {
					if op != tc.op {
						return nil
					}
					return edit(d.Backend, d.inner(field(p, tc.output)), func(h any) {
						s := h.([]float32)
						k := 0
						for i := range s {
							if math.Abs(float64(s[i])) > math.Abs(float64(s[k])) {
								k = i
							}
						}
						b := opstest.BF16Bits(s[k]) + 2
						s[k] = opstest.BF16Float(b)
					})
				}
			})
			wantFail(t, opstest.Check(cpu.New(), dut, only(tc.name), opstest.Options{}),
				tc.name, fmt.Sprintf("output %s: max error vs the float64 oracle", tc.output), "honest bf16 reference")
		})
	}
}
