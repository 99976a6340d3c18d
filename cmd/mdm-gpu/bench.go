package main

// mdm-gpu bench: side-by-side benchmarks (issue 9, perf-anchors.md). The measuring code
// lives in package bench; this file parses flags, opens backends, prints tables and saves
// results under bench/results/<machine>/.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/bench"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// benchFlags are shared by the bench subcommands.
type benchFlags struct {
	device    string
	out       string
	noSave    bool
	torch     string // auto, on, off
	precision string
}

func (f *benchFlags) register(c *cobra.Command, device string) {
	c.Flags().StringVar(&f.device, "device", device, "backend: cpu, sim (the CUDA kernels on the CPU simulator; timings meaningless), cuda, cuda:N, auto")
	c.Flags().StringVar(&f.out, "out", filepath.Join("bench", "results"), "results folder (files go to <out>/<machine>/<kind>.json)")
	c.Flags().BoolVar(&f.noSave, "no-save", false, "print only; write no results file")
	c.Flags().StringVar(&f.torch, "torch", "auto", "PyTorch baseline: auto (when a python3 with torch is found; MDM_PYTHON overrides), on (required), off")
}

// python finds the PyTorch interpreter per --torch: "" (and no error) when it is off or
// not found in auto mode.
func (f *benchFlags) python(a *app) (string, error) {
	if f.torch == "off" {
		return "", nil
	}
	if f.torch != "auto" && f.torch != "on" {
		return "", usagef("--torch %q: valid: auto, on, off", f.torch)
	}
	py, ver, err := bench.FindPython()
	if err != nil {
		if f.torch == "on" {
			return "", err
		}
		a.log.Warn().Msg(fmt.Sprintf("no PyTorch baseline: %v", err))
		return "", nil
	}
	a.log.Info().Str("python", py).Str("torch", ver).Msg("PyTorch baseline")
	return py, nil
}

// save writes a results file unless --no-save; a failure to write is a warning (the
// numbers are printed anyway), so that read-only checkouts can still benchmark.
func (f *benchFlags) save(a *app, file bench.File) {
	if f.noSave {
		return
	}
	p, err := bench.Save(f.out, file)
	if err != nil {
		a.log.Warn().Err(err).Msg("results not saved")
		return
	}
	fmt.Fprintf(a.stdout, "results: %s (regenerate the tables with `mdm-gpu bench report`)\n", p)
}

func gpuName(b *backend) string {
	if b.kind == "cuda" {
		return b.Name()
	}
	return ""
}

func parseThreads(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, usagef("--threads %q: want a comma-separated list of positive counts, e.g. 1,2", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func newBenchCmd(a *app) *cobra.Command {
	var f benchFlags
	var budget time.Duration
	c := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks side by side: our CPU step vs PyTorch, GPU kernels, training and sampling throughput",
		Long: `bench measures mdm-gpu against what users would pick instead, on the same machine, in one
run, as ratios (issue 9; docs: perf-anchors.md). Without a subcommand it runs a quick suite
for --device: on a GPU the kernels and a short owt-small training step (tokens/s, MFU); on
the CPU the tiny preset's step; on the simulator both at small sizes (plumbing only).

  mdm-gpu bench cpu-step --threads 1,2     # our CPU step vs PyTorch CPU, same thread count
  mdm-gpu bench check                      # loss/gradients/update vs PyTorch from our checkpoint
  mdm-gpu bench kernels --device cuda      # attention TFLOP/s, memory-bound kernels GB/s, vs PyTorch
  mdm-gpu bench step --device cuda         # owt-small tokens/s and MFU vs the PyTorch baseline
  mdm-gpu bench sample --device cpu        # tokens/s and network calls per sampler
  mdm-gpu bench profile                    # where a CPU step's time goes, per op
  mdm-gpu bench report                     # tables in bench/results/README.md and README.md

The PyTorch baseline is bench/pytorch/md4.py (embedded in this binary): the same MD4 model,
init, masking, loss and AdamW+EMA step. It needs a python3 with torch (Debian: apt-get
install python3-torch libopenblas0-pthread; MDM_PYTHON selects the interpreter).
Results are saved as JSON under bench/results/<machine>/.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchQuick(cmd.Context(), a, &f, budget)
		},
	}
	f.register(c, "auto")
	c.Flags().DurationVar(&budget, "budget", 20*time.Second, "time budget of the quick suite's training step (bench/gpu-check.sh gives the whole suite 45 s)")
	c.AddCommand(newBenchCPUStepCmd(a), newBenchCheckCmd(a), newBenchKernelsCmd(a), newBenchStepCmd(a),
		newBenchSampleCmd(a), newBenchProfileCmd(a), newBenchReportCmd(a))
	return c
}

// runBenchQuick is `mdm-gpu bench` without a subcommand.
func runBenchQuick(ctx context.Context, a *app, f *benchFlags, budget time.Duration) error {
	be, err := openBackend(f.device, 0, a.log)
	if err != nil {
		return err
	}
	defer be.close()
	switch be.kind {
	case "cpu":
		s := bench.Tiny()
		return runStep(ctx, a, f, be, s, 1, 5, budget, false)
	case "sim":
		if err := runKernels(ctx, a, f, be, true); err != nil {
			return err
		}
		s := bench.Tiny()
		s.Batch = 2
		return runStep(ctx, a, f, be, s, 1, 2, budget, false)
	}
	if err := runKernels(ctx, a, f, be, false); err != nil {
		return err
	}
	return runStep(ctx, a, f, be, bench.OWTSmall(), 2, 10, budget, false)
}

func newBenchCPUStepCmd(a *app) *cobra.Command {
	var f benchFlags
	var threads, shape string
	var rounds, steps, warmup int
	var check bool
	c := &cobra.Command{
		Use:   "cpu-step",
		Short: "Our CPU training step vs PyTorch CPU with the same thread count (tokens/s and ratio)",
		Long: `cpu-step times training steps of the tiny preset on our CPU backend and on the PyTorch
baseline with the same number of threads (our workers = GOMAXPROCS = torch.set_num_threads =
OMP/MKL/OpenBLAS threads), alternating rounds of each so that both see the same load on a
shared machine. It prints median and best tokens/s, the CPU time per step and the ratio
(> 1: we are faster). Build with -tags openblas (make build-openblas) for OpenBLAS GEMMs;
PyTorch uses its BLAS (install libopenblas0-pthread, or it falls back to the slow reference
BLAS and the comparison is meaningless).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ths, err := parseThreads(threads)
			if err != nil {
				return err
			}
			s, err := bench.LookupShape(shape)
			if err != nil {
				return usagef("--shape: %v", err)
			}
			if rounds < 1 || steps < 1 || warmup < 0 {
				return usagef("--rounds and --steps must be ≥ 1 and --warmup ≥ 0")
			}
			f.torch = "on"
			py, err := f.python(a)
			if err != nil {
				return err
			}
			m := bench.ThisMachine(bench.BLASName(), "")
			fmt.Fprintf(a.stdout, "cpu-step: %s, batch %d × L %d; %s, %d CPUs, GEMM %s, Go %s; %d rounds × %d steps per side\n",
				s.Name, s.Batch, s.SeqLen, m.CPU, m.CPUs, m.BLAS, m.Go, rounds, steps)
			res, err := bench.CompareCPUStep(bench.CPUStepOptions{Shape: s, Threads: ths, Rounds: rounds, Steps: steps, Warmup: warmup,
				Python: py, Log: a.stderr})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "THREADS\tOURS tok/s (best)\tPYTORCH tok/s (best)\tRATIO median (best)\tCPU s/step OURS\tPYTORCH")
			for _, r := range res {
				fmt.Fprintf(tw, "%d\t%.0f (%.0f)\t%.0f (%.0f)\t%.2f (%.2f)\t%.3f\t%.3f\n", r.Threads, r.Ours.TokensSec, r.Ours.BestTokS,
					r.Torch.TokensSec, r.Torch.BestTokS, r.Ratio, r.RatioB, r.Ours.CPUMedian, r.Torch.CPUMedian)
			}
			tw.Flush()
			if len(res) > 0 {
				fmt.Fprintf(a.stdout, "PyTorch %s; torch BLAS: %v\n", anyString(res[0].Torchv["torch"]), res[0].Torchv["blas_libs"])
			}
			file, err := bench.NewFile(bench.KindCPUStep, m, "cpu", map[string]any{"shape": s, "rounds": rounds, "steps": steps, "warmup": warmup}, res)
			if err != nil {
				return err
			}
			f.save(a, file)
			if check {
				return runCheck(cmd.Context(), a, &f, py, s, "")
			}
			return nil
		},
	}
	f.register(c, "cpu")
	c.Flags().StringVar(&threads, "threads", "1,"+strconv.Itoa(runtime.NumCPU()), "thread counts to compare, comma-separated")
	c.Flags().StringVar(&shape, "shape", "tiny", "model and batch: tiny or owt-small")
	c.Flags().IntVar(&rounds, "rounds", 6, "alternating rounds per thread count")
	c.Flags().IntVar(&steps, "steps", 3, "timed steps per side per round")
	c.Flags().IntVar(&warmup, "warmup", 2, "untimed steps per side first")
	c.Flags().BoolVar(&check, "check", false, "also run the numeric agreement check (bench check)")
	return c
}

func anyString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return "?"
}

func newBenchCheckCmd(a *app) *cobra.Command {
	var f benchFlags
	var shape, dir string
	c := &cobra.Command{
		Use:   "check",
		Short: "Numeric agreement with PyTorch: loss, gradients and AdamW+EMA update from our checkpoint",
		Long: `check takes one training step on our CPU backend and the same step in PyTorch from the
same weights (our safetensors training state, read under our canonical names), batch and
mask (exported from Go), then reads PyTorch's state back with our checkpoint loader and
compares loss, gradients, update, EMA and moments (also go test -run PyTorch ./bench/).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := bench.LookupShape(shape)
			if err != nil {
				return usagef("--shape: %v", err)
			}
			f.torch = "on"
			py, err := f.python(a)
			if err != nil {
				return err
			}
			return runCheck(cmd.Context(), a, &f, py, s, dir)
		},
	}
	f.register(c, "cpu")
	c.Flags().StringVar(&shape, "shape", "tiny", "model and batch: tiny (owt-small takes minutes on a CPU)")
	c.Flags().StringVar(&dir, "dir", "", "keep the exchanged files (state, batch, PyTorch's state and gradients) here (default: a temporary folder)")
	return c
}

func runCheck(ctx context.Context, a *app, f *benchFlags, py string, s bench.Shape, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "mdm-bench-check-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ag, err := bench.CheckAgainstPyTorch(ctx, py, dir, s)
	if err != nil {
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "check: %s, step %d, %d masked positions (PyTorch %d); PyTorch %s\n", s.Name, ag.Step, ag.Masked, ag.MaskedTorch, anyString(ag.Torch["torch"]))
	fmt.Fprintf(w, "  loss        ours %.9f  PyTorch %.9f bits/token  rel diff %.2e\n", ag.LossOurs, ag.LossTorch, ag.LossRel)
	fmt.Fprintf(w, "  gradients   max rel diff %.2e (%s), L2 rel diff %.2e; grad norm %.6g vs %.6g\n", ag.GradRel, ag.GradWorst, ag.GradL2Rel, ag.GradNormOurs, ag.GradNormTorch)
	fmt.Fprintf(w, "  AdamW       update max rel diff %.2e (%s); EMA %.2e; moments %.2e; lr %g vs %g\n", ag.UpdateRel, ag.UpdateWorst, ag.EMARel, ag.MomentRel, ag.LROurs, ag.LRTorch)
	fmt.Fprintf(w, "  checkpoint  PyTorch's state read back by train.LoadState: %v\n", ag.ReloadedState)
	file, err := bench.NewFile(bench.KindCheck, bench.ThisMachine(bench.BLASName(), ""), "cpu", map[string]any{"shape": s.Name}, ag)
	if err != nil {
		return err
	}
	f.save(a, file)
	return nil
}

func newBenchKernelsCmd(a *app) *cobra.Command {
	var f benchFlags
	var small bool
	c := &cobra.Command{
		Use:   "kernels",
		Short: "GPU kernels: attention TFLOP/s and % of peak, memory-bound kernels GB/s and % of bandwidth, vs PyTorch",
		Long: `kernels times our attention (forward and backward, bf16, head dim 64, L=1024), GEMM, masked
cross-entropy, sampler, LayerNorm and AdamW kernels at GPT-2-small shapes, and a copy kernel
for the measured bandwidth; with PyTorch on the same GPU it times the PyTorch equivalents
(SDPA, F.cross_entropy, torch.multinomial, F.layer_norm, fused AdamW). On the simulator and
the CPU it runs at small sizes to test the plumbing: those timings are meaningless.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := openBackend(f.device, 0, a.log)
			if err != nil {
				return err
			}
			defer be.close()
			return runKernels(cmd.Context(), a, &f, be, small || be.kind != "cuda")
		},
	}
	f.register(c, "auto")
	c.Flags().BoolVar(&small, "small", false, "small shapes (always on for cpu and sim)")
	return c
}

func runKernels(ctx context.Context, a *app, f *benchFlags, be *backend, small bool) error {
	dt := ops.BF16
	if be.kind == "cpu" {
		dt = ops.F32
	}
	peakT, peakBW := bench.GPUPeaks(gpuName(be))
	label := ""
	if be.kind != "cuda" {
		label = " — " + strings.ToUpper(be.kind) + ": simulated/CPU timings are meaningless (plumbing only)"
	}
	fmt.Fprintf(a.stdout, "kernels on %s%s\n", be.Name(), label)
	res := bench.RunKernels(be, bench.KernelOptions{Small: small, DType: dt}, peakT, peakBW)
	var torchVer map[string]any
	if be.kind == "cuda" && !small {
		if py, err := f.python(a); err != nil {
			return err
		} else if py != "" {
			var tk bench.TorchKernels
			if err := bench.RunTorch(ctx, bench.TorchOptions{Python: py, Device: "cuda", Shape: bench.OWTSmall()}, &tk, "--kernels", "--steps", "20"); err != nil {
				a.log.Warn().Err(err).Msg("PyTorch kernels failed")
			} else {
				bench.AttachTorch(res, &tk)
				torchVer = tk.Versions
			}
		}
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tSHAPE\tms\tTFLOP/s\tGB/s\t% PEAK\t% COPY\tPYTORCH ms\tSPEEDUP")
	for _, r := range res {
		if r.Err != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Shape, r.Err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Shape, 1e3*r.Seconds, num(r.TFLOPs, "%.1f"), num(r.GBps, "%.0f"),
			num(r.PctPeak, "%.0f%%"), num(r.PctCopy, "%.0f%%"), num(1e3*r.Torch, "%.3f"), num(r.Speedup, "%.2fx"))
	}
	tw.Flush()
	file, err := bench.NewFile(bench.KindKernels, bench.ThisMachine(bench.BLASName(), gpuName(be)), be.Name(),
		map[string]any{"small": small, "dtype": dt.String(), "peak_tflops": peakT, "peak_bytes_per_s": peakBW, "pytorch_versions": torchVer}, res)
	if err != nil {
		return err
	}
	if be.kind != "cuda" {
		file.Notes = append(file.Notes, "simulated/CPU run at small shapes: plumbing only, timings meaningless")
	}
	f.save(a, file)
	return nil
}

func num(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func newBenchStepCmd(a *app) *cobra.Command {
	var f benchFlags
	var shape string
	var batch, steps, warmup, threads int
	var compile bool
	c := &cobra.Command{
		Use:   "step",
		Short: "Training throughput: tokens/s and MFU (owt-small on a GPU, tiny on a CPU) vs the PyTorch baseline",
		Long: `step times training steps (mask, forward, masked CE, backward, AdamW + EMA) of --shape on
--device and reports tokens/s and MFU (6N + 12·layers·D·L FLOPs per token over the bf16 peak
of the GPU); with PyTorch present it runs the baseline on the same device (bf16 autocast,
SDPA, fused AdamW; --compile adds torch.compile) and prints the ratio.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := openBackend(f.device, threads, a.log)
			if err != nil {
				return err
			}
			defer be.close()
			if shape == "" {
				shape = "tiny"
				if be.kind == "cuda" {
					shape = "owt-small"
				}
			}
			s, err := bench.LookupShape(shape)
			if err != nil {
				return usagef("--shape: %v", err)
			}
			if batch > 0 {
				s.Batch = batch
			}
			if steps < 1 || warmup < 0 {
				return usagef("--steps must be ≥ 1 and --warmup ≥ 0")
			}
			return runStep(cmd.Context(), a, &f, be, s, warmup, steps, 0, compile)
		},
	}
	f.register(c, "auto")
	c.Flags().StringVar(&f.precision, "precision", "auto", "activations: auto (bf16 on cuda when the head dim is 64 or 128), f32, bf16")
	c.Flags().StringVar(&shape, "shape", "", "tiny or owt-small (default: owt-small on cuda, tiny elsewhere)")
	c.Flags().IntVar(&batch, "batch", 0, "sequences per step (0: the shape's: tiny 32, owt-small 8)")
	c.Flags().IntVar(&steps, "steps", 10, "timed steps")
	c.Flags().IntVar(&warmup, "warmup", 2, "untimed steps first")
	c.Flags().IntVar(&threads, "threads", 0, "CPU workers (0: all cores)")
	c.Flags().BoolVar(&compile, "compile", false, "torch.compile the PyTorch baseline (torch ≥ 2)")
	return c
}

func runStep(ctx context.Context, a *app, f *benchFlags, be *backend, s bench.Shape, warmup, steps int, budget time.Duration, compile bool) error {
	prec := f.precision
	if prec == "" {
		prec = "auto"
	}
	compute, err := computeDType(prec, be, s.ModelConfig().HeadDim())
	if err != nil {
		return err
	}
	peakT, _ := bench.GPUPeaks(gpuName(be))
	label := ""
	if be.kind == "sim" {
		label = " (SIMULATED: timings meaningless)"
	}
	fmt.Fprintf(a.stdout, "step: %s on %s%s, batch %d × L %d, compute %v, %.1f MFLOP/token\n", s.Name, be.Name(), label, s.Batch, s.SeqLen,
		compute, s.FLOPsPerToken()/1e6)
	r, err := bench.RunStep(be, s, compute, warmup, steps, budget, peakT)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "  ours     %.0f tokens/s (median of %d steps, %.3f s/step; best %.0f tok/s)", r.Ours.TokensSec, len(r.Ours.Steps), r.Ours.Median, r.Ours.BestTokS)
	if r.MFU > 0 {
		fmt.Fprintf(a.stdout, ", MFU %.1f%% of %.0f TFLOP/s", 100*r.MFU, peakT)
	}
	fmt.Fprintln(a.stdout)
	if be.kind == "cuda" || be.kind == "cpu" {
		py, err := f.python(a)
		if err != nil {
			return err
		}
		if py != "" {
			dev := "cpu"
			if be.kind == "cuda" {
				dev = "cuda"
			}
			o := bench.TorchOptions{Python: py, Shape: s, Device: dev, Threads: workers(be), Compile: compile}
			if dev == "cpu" && workers(be) > 1 {
				// Spinning OpenMP threads can make a multi-threaded PyTorch step several
				// times slower on a busy machine (bench/README.md); cpu-step tries both.
				o.Env = []string{"OMP_WAIT_POLICY=PASSIVE"}
			}
			t, ver, err := bench.RunTorchStep(ctx, o, warmup, steps)
			if err != nil {
				a.log.Warn().Err(err).Msg("PyTorch baseline failed")
			} else {
				r.Torch, r.TorchVersions, r.TorchCompile = &t, ver, compile
				fmt.Fprintf(a.stdout, "  PyTorch  %.0f tokens/s (%.3f s/step; torch %s%s); ratio ours/PyTorch %.2f\n", t.TokensSec, t.Median,
					anyString(ver["torch"]), map[bool]string{true: ", compiled"}[compile], r.Ours.TokensSec/t.TokensSec)
			}
		}
	}
	file, err := bench.NewFile(bench.KindStep, bench.ThisMachine(bench.BLASName(), gpuName(be)), be.Name(),
		map[string]any{"shape": s, "compute": compute.String(), "warmup": warmup, "steps": steps}, r)
	if err != nil {
		return err
	}
	if be.kind == "sim" {
		file.Notes = append(file.Notes, "simulated device: timings meaningless")
	}
	f.save(a, file)
	return nil
}

func newBenchSampleCmd(a *app) *cobra.Command {
	var f benchFlags
	var shape string
	var n, batch, steps, threads int
	c := &cobra.Command{
		Use:   "sample",
		Short: "Sampling throughput: generated tokens/s and network calls per sampler",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := openBackend(f.device, threads, a.log)
			if err != nil {
				return err
			}
			defer be.close()
			s, err := bench.LookupShape(shape)
			if err != nil {
				return usagef("--shape: %v", err)
			}
			prec := f.precision
			compute, err := computeDType(prec, be, s.ModelConfig().HeadDim())
			if err != nil {
				return err
			}
			if n < 1 || batch < 1 {
				return usagef("--n and --batch must be ≥ 1")
			}
			T := steps
			if T <= 0 {
				T = s.SeqLen
			}
			fmt.Fprintf(a.stdout, "sample: %s model on %s, %d sequences of %d in batches of %d, ancestral T=%d\n", s.Name, be.Name(), n, s.SeqLen, batch, T)
			res, err := bench.RunSample(be, s, compute, bench.SampleOptions{N: n, Batch: batch, Steps: steps})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SAMPLER\tMODE\tT\ttok/s\tNETWORK CALLS/BATCH\tCALLS/s\tSECONDS")
			for _, r := range res {
				if r.Err != "" {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Sampler, r.Mode, r.Steps, r.Err)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.1f\t%.2f\n", r.Sampler, r.Mode, r.Steps, r.TokensSec, r.NFEPerSeq, r.CallsSec, r.Seconds)
			}
			tw.Flush()
			file, err := bench.NewFile(bench.KindSample, bench.ThisMachine(bench.BLASName(), gpuName(be)), be.Name(),
				map[string]any{"shape": s.Name, "n": n, "batch": batch, "steps": steps, "compute": compute.String()}, res)
			if err != nil {
				return err
			}
			f.save(a, file)
			return nil
		},
	}
	f.register(c, "auto")
	c.Flags().StringVar(&f.precision, "precision", "auto", "activations: auto, f32, bf16")
	c.Flags().StringVar(&shape, "shape", "tiny", "model: tiny or owt-small")
	c.Flags().IntVar(&n, "n", 32, "sequences to generate")
	c.Flags().IntVar(&batch, "batch", 32, "sequences per batch")
	c.Flags().IntVar(&steps, "steps", 0, "ancestral steps T (0: the sequence length)")
	c.Flags().IntVar(&threads, "threads", 0, "CPU workers (0: all cores)")
	return c
}

func newBenchProfileCmd(a *app) *cobra.Command {
	var shape, device string
	var steps, threads int
	c := &cobra.Command{
		Use:   "profile",
		Short: "Where a training step's time goes, per op (synchronised after every op)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := openBackend(device, threads, a.log)
			if err != nil {
				return err
			}
			defer be.close()
			if threads > 0 && be.kind == "cpu" {
				prev := runtime.GOMAXPROCS(threads)
				defer runtime.GOMAXPROCS(prev)
			}
			s, err := bench.LookupShape(shape)
			if err != nil {
				return usagef("--shape: %v", err)
			}
			p, wall, err := bench.ProfileSteps(be.Backend, s, steps)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "profile: %s on %s (%d workers, GEMM %s), %d steps\n", s.Name, be.Name(), workers(be), bench.BLASName(), steps)
			io.WriteString(a.stdout, bench.FormatProfile(p, wall))
			return nil
		},
	}
	c.Flags().StringVar(&device, "device", "cpu", "backend: cpu, sim, cuda")
	c.Flags().StringVar(&shape, "shape", "tiny", "tiny or owt-small")
	c.Flags().IntVar(&steps, "steps", 3, "profiled steps (after one warm-up step)")
	c.Flags().IntVar(&threads, "threads", 0, "CPU workers and GOMAXPROCS (0: all cores)")
	return c
}

func newBenchReportCmd(a *app) *cobra.Command {
	var results, readme string
	var stdout bool
	c := &cobra.Command{
		Use:   "report",
		Short: "Regenerate the results tables (bench/results/README.md and the README section) from the JSON files",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := bench.LoadAll(results)
			if err != nil {
				return err
			}
			table, err := bench.Report(files)
			if err != nil {
				return err
			}
			if stdout {
				_, err := io.WriteString(a.stdout, table)
				return err
			}
			doc := "# Benchmark results\n\nGenerated by `mdm-gpu bench report` from the JSON files in this folder " +
				"(one folder per machine; each file holds the machine, versions and date of its run). " +
				"How to reproduce: see bench/README.md.\n\n" + table
			p := filepath.Join(results, "README.md")
			if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote %s (%d results files)\n", p, len(files))
			if readme != "" {
				short, err := bench.Report(bench.ForReadme(files))
				if err != nil {
					return err
				}
				short += "All results, with the simulated-device and sampling runs: [bench/results/README.md](bench/results/README.md).\n"
				if err := bench.UpdateReadme(readme, short); err != nil {
					if errors.Is(err, os.ErrNotExist) {
						return nil
					}
					return err
				}
				fmt.Fprintf(a.stdout, "updated the results section of %s\n", readme)
			}
			return nil
		},
	}
	c.Flags().StringVar(&results, "results", filepath.Join("bench", "results"), "results folder")
	c.Flags().StringVar(&readme, "readme", "README.md", "README whose generated section to update (empty: none)")
	c.Flags().BoolVar(&stdout, "stdout", false, "print the tables instead of writing files")
	return c
}
