package bench

import (
	"errors"
	"runtime"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
)

// BenchmarkOps times every case of the parity table (opstest.Cases: the one list of ops,
// with each case's FLOPs and bytes) through opstest.BenchCase, reporting GFLOP/s and GB/s:
//
//	cpu/<case>  the CPU reference backend with GOMAXPROCS workers (-cpu 1,2);
//	sim/<case>  the simulated device (the real kernels compiled for the CPU by
//	            kernels/sim). Plumbing only: simulated timings say nothing about a GPU.
//
// -short skips the Large (production-shape) cases. Select with -bench, e.g.
//
//	go test -run '^$' -bench 'Ops/cpu/AttnFwd' -cpu 1,2 ./bench/
//	go test -tags openblas -run '^$' -bench 'Ops/cpu/MatMul' ./bench/
//
// On a GPU machine, cuda's BenchmarkRealOps (go test -tags cuda ./cuda/) times the same
// table on the real device.
func BenchmarkOps(b *testing.B) {
	for _, bk := range []struct {
		name string
		be   func() ops.Backend
	}{
		{"cpu", func() ops.Backend { return cpu.New(cpu.WithWorkers(runtime.GOMAXPROCS(0))) }},
		{"sim", func() ops.Backend { return cuda.NewBackend(cuda.NewSimDevice()) }},
	} {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.be()
			for _, c := range opstest.Cases() {
				if testing.Short() && c.Size == opstest.Large {
					continue
				}
				b.Run(c.Name, func(b *testing.B) {
					if err := probe(be, c); err != nil {
						b.Skipf("UNSUPPORTED on %s: %v", be.Name(), err)
					}
					opstest.BenchCase(b, be, c)
				})
			}
		})
	}
}

// probe runs c once on be and returns the error if the backend does not support this
// case's shape (Supports answers per op and dtype only; e.g. the flash attention kernels
// have head dims 64 and 128).
func probe(be ops.Backend, c opstest.Case) error {
	if !be.Supports(c.Op, c.DType) {
		return nil // BenchCase skips it with its own message
	}
	inst, err := c.Setup(be)
	if err != nil {
		return nil // BenchCase reports it
	}
	defer inst.Free()
	if err := inst.Run(); errors.Is(err, ops.ErrUnsupported) {
		return err
	}
	return nil
}
