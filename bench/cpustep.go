package bench

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
)

// CPUStepOptions configures CompareCPUStep.
type CPUStepOptions struct {
	Shape   Shape
	Threads []int // thread counts to compare (each: our workers = GOMAXPROCS = torch threads)
	Rounds  int   // alternating rounds (ours, then PyTorch) per thread count
	Steps   int   // timed steps per side per round
	Warmup  int   // untimed steps per side before the first round
	Python  string
	Log     io.Writer // progress lines (nil: none)
	Stderr  io.Writer // the PyTorch script's stderr
}

// CPUStepResult is one thread count of the side-by-side CPU step comparison.
type CPUStepResult struct {
	Threads int            `json:"threads"`
	Ours    Timing         `json:"ours"`
	Torch   Timing         `json:"pytorch"`
	Ratio   float64        `json:"ratio_median"` // our tokens/s ÷ PyTorch's, from the medians (> 1: we are faster)
	RatioB  float64        `json:"ratio_best"`   // the same from the fastest steps
	Loads   [][]string     `json:"load_averages"`
	Torchv  map[string]any `json:"pytorch_versions"`
	// OMPWaitPolicy is the OMP_WAIT_POLICY PyTorch ran with ("" = libgomp's default,
	// spinning): with several threads both are tried and the faster is kept, because on a
	// busy machine spinning OpenMP threads can make PyTorch several times slower.
	OMPWaitPolicy string `json:"pytorch_omp_wait_policy"`
}

// bestTorch starts the PyTorch baseline with n threads, warmed up. With n > 1 it tries
// libgomp's default wait policy and OMP_WAIT_POLICY=PASSIVE (two timed steps each after
// the warm-up) and keeps the faster, so that the baseline is PyTorch at its best.
func bestTorch(opt CPUStepOptions, n int, logf func(string, ...any)) (*TorchServer, string, error) {
	policies := []string{""}
	if n > 1 {
		policies = append(policies, "PASSIVE")
	}
	var best *TorchServer
	bestPolicy, bestTime := "", 0.0
	for _, pol := range policies {
		o := TorchOptions{Python: opt.Python, Shape: opt.Shape, Threads: n, Stderr: opt.Stderr}
		if pol != "" {
			o.Env = []string{"OMP_WAIT_POLICY=" + pol}
		}
		ts, err := StartTorch(o)
		if err != nil {
			if best != nil {
				best.Close()
			}
			return nil, "", err
		}
		if _, _, err := ts.Steps(max(opt.Warmup, 1)); err != nil {
			ts.Close()
			if best != nil {
				best.Close()
			}
			return nil, "", err
		}
		if len(policies) == 1 {
			return ts, pol, nil
		}
		w, _, err := ts.Steps(2)
		if err != nil {
			ts.Close()
			if best != nil {
				best.Close()
			}
			return nil, "", err
		}
		t := median(w)
		logf("  threads=%d: PyTorch with OMP_WAIT_POLICY=%q: %.3fs per step\n", n, pol, t)
		if best == nil || t < bestTime {
			if best != nil {
				best.Close()
			}
			best, bestPolicy, bestTime = ts, pol, t
		} else {
			ts.Close()
		}
	}
	return best, bestPolicy, nil
}

// CompareCPUStep times training steps of opt.Shape on our CPU backend and on the PyTorch
// baseline with the same thread count, alternating rounds of each so that both see the
// same machine load (the development machines are shared), and reports medians and minima.
func CompareCPUStep(opt CPUStepOptions) ([]CPUStepResult, error) {
	logf := func(format string, a ...any) {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, format, a...)
		}
	}
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	var res []CPUStepResult
	for _, n := range opt.Threads {
		runtime.GOMAXPROCS(n)
		be := cpu.New(cpu.WithWorkers(n))
		st, err := NewStepper(be, opt.Shape, 1)
		if err != nil {
			be.Close()
			return res, err
		}
		ts, policy, err := bestTorch(opt, n, logf)
		if err != nil {
			st.Free()
			be.Close()
			return res, err
		}
		r := CPUStepResult{Threads: n, Torchv: ts.Versions, OMPWaitPolicy: policy}
		var ours, oursCPU, torch, torchCPU []float64
		err = func() error {
			for range opt.Warmup {
				if _, err := st.Step(); err != nil {
					return err
				}
			}

			for k := range opt.Rounds {
				r.Loads = append(r.Loads, LoadAverage())
				runtime.GC()
				for range opt.Steps {
					t0, c0 := time.Now(), CPUTime()
					if _, err := st.Step(); err != nil {
						return err
					}
					ours, oursCPU = append(ours, time.Since(t0).Seconds()), append(oursCPU, CPUTime()-c0)
				}
				t, c, err := ts.Steps(opt.Steps)
				if err != nil {
					return err
				}
				torch, torchCPU = append(torch, t...), append(torchCPU, c...)
				logf("  threads=%d round %d/%d: ours %.3fs (cpu %.3fs), pytorch %.3fs (cpu %.3fs) per step, load %v\n", n, k+1, opt.Rounds,
					median(ours[len(ours)-opt.Steps:]), median(oursCPU[len(oursCPU)-opt.Steps:]), median(t), median(c), r.Loads[len(r.Loads)-1])
			}
			return nil
		}()
		ts.Close()
		st.Free()
		be.Close()
		if err != nil {
			return res, err
		}
		tok := opt.Shape.TokensPerStep()
		r.Ours, r.Torch = Summarise(ours, oursCPU, tok), Summarise(torch, torchCPU, tok)
		r.Ratio = r.Ours.TokensSec / r.Torch.TokensSec
		r.RatioB = r.Ours.BestTokS / r.Torch.BestTokS
		res = append(res, r)
	}
	return res, nil
}

// BLASName is the CPU backend's GEMM library in this build ("gonum" or "openblas").
func BLASName() string { return cpu.New(cpu.WithWorkers(1)).BLAS() }
