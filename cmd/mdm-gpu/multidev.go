package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mdm-gpu/mdm-gpu/cuda"
	"github.com/mdm-gpu/mdm-gpu/cuda/detect"
	"github.com/mdm-gpu/mdm-gpu/cuda/nvml"
	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/diffusion"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/train"
)

// Data parallelism in the CLI (issue 6). One device and no accumulation keeps the
// single-device trainer (engine/train, unchanged and bit-identical to earlier versions);
// more devices (--devices), gradient accumulation (--accum) or a multi-process launch
// (RANK/WORLD_SIZE or Slurm variables) train through cuda/sched: one goroutine per device
// of this process, the global --batch split exactly, gradients summed in a fixed tree
// order (bit-identical for power-of-two accumulation with equal micro-batches), and a
// checkpoint that resumes on any number of devices.

// simDeviceLimit is how many simulated or CPU replicas --devices may ask for.
const simDeviceLimit = 64

// checkDevicesSyntax validates --devices without knowing the machine.
func checkDevicesSyntax(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return fmt.Errorf("--devices %d: must be a count of at least 1, or a list of indices such as 0,1,3", n)
		}
		return nil
	}
	if _, err := sched.ParseDevices(s, 1<<16); err != nil {
		return fmt.Errorf("--devices %q: %s", s, strings.TrimPrefix(err.Error(), "sched: "))
	}
	return nil
}

// devicePlan is where a run trains.
type devicePlan struct {
	Kind     string // "cpu", "sim" or "cuda" ("" = the single-device path resolves --device itself)
	Ordinals []int  // the devices of this process
	Env      sched.LaunchEnv
	Plan     sched.Plan
	Multi    bool // train through cuda/sched
}

// Rank0 reports whether this process is rank 0 (it writes checkpoints, logs and evaluates).
func (p *devicePlan) Rank0() bool { return p.Env.Rank == 0 }

// String describes the plan for the logs.
func (p *devicePlan) String() string {
	s := p.Plan.String()
	if p.Env.Distributed() {
		s += "; " + p.Env.String()
	}
	return s
}

// gpuCount returns the number of GPUs CUDA can see (through NVML), 0 when none.
func gpuCount() int { return len(detect.Detect().GPUs) }

// planDevices resolves --device, --devices, --accum and the launch environment into the
// devices of this process and the batch plan. A global batch that does not divide over
// the devices and accumulation steps is refused, naming the implied per-device batch.
func planDevices(cfg *RunConfig, env sched.LaunchEnv) (*devicePlan, error) {
	p := &devicePlan{Env: env}
	spec, err := cuda.ParseDeviceSpec(cfg.Device)
	if err != nil {
		return nil, &usageError{err}
	}
	devs := strings.TrimSpace(cfg.Devices)
	accum := max(cfg.Accum, 1)
	if !env.Distributed() && (devs == "" || devs == "1") && accum == 1 {
		p.Plan, _ = sched.NewPlan(cfg.Batch, 1, 1)
		return p, nil // the single-device trainer; openBackend resolves --device
	}
	if cfg.GenMD4 {
		return nil, usagef("--genmd4 trains on one device: drop --devices/--accum (the data-parallel scheduler runs MD4's step)")
	}
	if cfg.MicroBatch > 0 {
		return nil, usagef("--micro-batch %d: with --devices/--accum the micro-batch is --batch / (devices × accum); drop --micro-batch", cfg.MicroBatch)
	}
	kind := spec.Kind
	if kind == "auto" {
		kind = "cpu"
		if cuda.CUDABuild && gpuCount() > 0 {
			kind = "cuda"
		}
	}
	p.Kind = kind
	count := simDeviceLimit
	if kind == "cuda" {
		if count = gpuCount(); count == 0 {
			count = 1 << 10 // NVML cannot tell: opening the device reports what is wrong
		}
	}
	parse := func(s string) ([]int, error) {
		o, err := sched.ParseDevices(s, count)
		if err != nil {
			return nil, &usageError{errors.New(strings.TrimPrefix(err.Error(), "sched: "))}
		}
		return o, nil
	}
	switch {
	case env.Distributed():
		switch {
		case devs == "":
			o := 0
			if kind == "cuda" {
				o = env.LocalRank
				if strings.Contains(cfg.Device, ":") {
					o = spec.Ordinal
				}
			}
			p.Ordinals = []int{o}
		default:
			o, err := parse(devs)
			if err != nil {
				return nil, err
			}
			if len(o) != 1 {
				return nil, usagef("--devices %q: in a multi-process launch (%s) every process drives one device; give one index (default LOCAL_RANK=%d) and start one process per device",
					devs, env.Source, env.LocalRank)
			}
			p.Ordinals = o
		}
	case devs == "":
		o := 0
		if kind == "cuda" {
			o = spec.Ordinal
		}
		p.Ordinals = []int{o}
	default:
		if n, err := strconv.Atoi(devs); err == nil {
			if n < 1 {
				return nil, usagef("--devices %d: a count must be at least 1 (one number is a count of devices; only in a multi-process launch is it this process's device index)", n)
			}
			if n > count {
				return nil, usagef("--devices %d: this machine has %d %s device(s)", n, count, kind)
			}
			devs = "n:" + devs
		}
		if p.Ordinals, err = parse(devs); err != nil {
			return nil, err
		}
	}
	world := len(p.Ordinals)
	if env.Distributed() {
		world = env.WorldSize
	}
	plan, err := sched.NewPlan(cfg.Batch, world, accum)
	if err != nil {
		where := fmt.Sprintf("%d device(s)", world)
		if env.Distributed() {
			where = fmt.Sprintf("%d processes (WORLD_SIZE)", world)
		}
		return nil, usagef("--batch %d over %s with --accum %d: %s", cfg.Batch, where, accum, strings.TrimPrefix(err.Error(), "sched: "))
	}
	p.Plan, p.Multi = plan, true
	return p, nil
}

// schedDevices builds the scheduler's devices of this process.
func schedDevices(p *devicePlan, threads int, log zerolog.Logger) (devs []sched.Device, reduction string) {
	reduction = "host"
	useNCCL := false
	if p.Kind == "cuda" && sched.NCCLAvailable {
		if v, err := sched.NCCLVersion(); err != nil {
			log.Warn().Err(err).Msg("NCCL unavailable: gradients are all-reduced through host memory instead")
		} else {
			useNCCL, reduction = true, "nccl"
			log.Info().Int("nccl_version", v).Msg("NCCL loaded: gradients are all-reduced on the GPUs")
		}
	}
	per := threads / max(len(p.Ordinals), 1)
	if threads == 0 {
		per = max(runtime.NumCPU()/max(len(p.Ordinals), 1), 1)
	}
	per = max(per, 1)
	for _, o := range p.Ordinals {
		d := sched.Device{Name: fmt.Sprintf("%s:%d", p.Kind, o)}
		switch p.Kind {
		case "cpu":
			d.Open = func() (ops.Backend, error) { return cpu.New(cpu.WithWorkers(per)), nil }
			d.Close = func(be ops.Backend) error {
				if c, ok := be.(*cpu.Backend); ok {
					c.Close()
				}
				return nil
			}
		case "sim":
			d.Open = func() (ops.Backend, error) { return cuda.OpenBackend(cuda.DeviceSpec{Kind: "sim"}) }
		default:
			d.Open = func() (ops.Backend, error) {
				b, err := cuda.OpenBackend(cuda.DeviceSpec{Kind: "cuda", Ordinal: o})
				if err != nil {
					return nil, deviceError(fmt.Sprintf("--devices: cuda:%d", o), err)
				}
				return b, nil
			}
			if useNCCL {
				d.Reducer = sched.NCCLReducer
			}
		}
		devs = append(devs, d)
	}
	return devs, reduction
}

// runTrainer is the training state of a run on one device or several.
type runTrainer interface {
	Step() int
	Skipped() int
	TrainStep(rows rowSource) (train.StepStats, error)
	Save(path string, meta map[string]string) error
	Load(path string) error
	// Eval evaluates the "ema" or "raw" weights (on rank 0's device).
	Eval(weights string, seqs []int32) (diffusion.EvalResult, error)
	HasEMA() bool
	// Agree combines stop flags over every process of a multi-process job (a sum);
	// single-process runs return them unchanged.
	Agree(flags []float64) error
	Close()
}

// singleTrainer is the single-device trainer (MD4 or GenMD4), as before data parallelism.
type singleTrainer struct {
	cfg          RunConfig
	log          zerolog.Logger
	tr           *train.Trainer
	gen          *train.GenTrainer
	evRaw, evEMA runEvaluator
	x0           []int32
}

func newSingleTrainer(cfg RunConfig, m *model.Model, opt *train.Optimizer, est diffusion.Estimator, log zerolog.Logger) (*singleTrainer, error) {
	tr, gen, err := newRunTrainer(cfg, m, opt, est) // genmd4.go
	if err != nil {
		return nil, err
	}
	st := &singleTrainer{cfg: cfg, log: log, tr: tr, gen: gen, x0: make([]int32, cfg.Batch*cfg.SeqLen)}
	evCfg := evalConfig(cfg, est)
	if st.evRaw, err = newRunEvaluator(m, evCfg); err != nil {
		st.Close()
		return nil, err
	}
	if opt.EMA != nil {
		em, err := m.WithWeights(opt.EMA)
		if err != nil {
			st.Close()
			return nil, err
		}
		if st.evEMA, err = newRunEvaluator(em, evCfg); err != nil {
			st.Close()
			return nil, err
		}
	}
	return st, nil
}

func evalConfig(cfg RunConfig, est diffusion.Estimator) train.EvalConfig {
	return train.EvalConfig{Batch: cfg.EvalBatch, Samples: cfg.EvalSamples, Seed: cfg.EvalSeed, Antithetic: true, Est: est}
}

func (s *singleTrainer) Step() int    { return s.tr.Step }
func (s *singleTrainer) Skipped() int { return s.tr.Skipped }
func (s *singleTrainer) HasEMA() bool { return s.evEMA != nil }

func (s *singleTrainer) TrainStep(rows rowSource) (train.StepStats, error) {
	if err := rows.TrainRows(s.x0, 0, s.cfg.Batch, s.cfg.Seed, uint64(s.tr.Step)); err != nil {
		return train.StepStats{}, err
	}
	return s.trainStep(s.x0) // genmd4.go
}

func (s *singleTrainer) Save(path string, meta map[string]string) error {
	return train.SaveState(path, s.tr, meta)
}

func (s *singleTrainer) Load(path string) error { return s.loadState(path) }

func (s *singleTrainer) Eval(weights string, seqs []int32) (diffusion.EvalResult, error) {
	ev := s.evRaw
	if weights == "ema" {
		ev = s.evEMA
	}
	return ev.Eval(seqs, nil)
}

func (s *singleTrainer) Agree([]float64) error { return nil }

func (s *singleTrainer) Close() {
	if s.evRaw != nil {
		s.evRaw.Free()
	}
	if s.evEMA != nil {
		s.evEMA.Free()
	}
	freeRunTrainer(s.tr, s.gen)
}

// multiTrainer trains through cuda/sched.
type multiTrainer struct {
	s            *sched.Scheduler
	comms        []sched.Comm
	seed         uint64
	procs        int // processes in the job
	hasEMA       bool
	evRaw, evEMA runEvaluator // built and used on device 0's goroutine
}

func newMultiTrainer(cfg RunConfig, mc model.Config, optCfg train.OptimConfig, est diffusion.Estimator, p *devicePlan, log zerolog.Logger, dataFP string) (*multiTrainer, error) {
	devs, reduction := schedDevices(p, cfg.Threads, log)
	sc := sched.Config{Model: mc, Optim: optCfg, Accum: p.Plan.Accum, InitSeed: cfg.Seed, Reduction: reduction,
		Step: train.StepConfig{Batch: cfg.Batch, Seed: cfg.Seed, Antithetic: cfg.Antithetic, Est: est, SkipNonFinite: cfg.SkipNonFinite}}
	var comms []sched.Comm
	var err error
	procs := 1
	if p.Env.Distributed() {
		procs = p.Env.WorldSize
		fp := sc.Fingerprint(p.Plan.World) + ";data=" + dataFP + ";eval_seed=" + strconv.FormatUint(cfg.EvalSeed, 10)
		log.Info().Str("launch", p.Env.String()).Str("master", p.Env.Addr()).Msg("joining the job (rendezvous at rank 0)")
		c, err := sched.DialTCP(sched.TCPFromEnv(p.Env, fp))
		if err != nil {
			if c != nil {
				c.Close()
			}
			return nil, fmt.Errorf("multi-process rendezvous (%s): %w", p.Env, err)
		}
		comms = []sched.Comm{c}
	} else if comms, err = sched.NewLocalGroup(len(devs), 0); err != nil {
		return nil, err
	}
	s, err := sched.New(sc, devs, comms)
	if err != nil {
		return nil, err
	}
	mt := &multiTrainer{s: s, comms: comms, seed: cfg.Seed, procs: procs, hasEMA: cfg.EMA > 0}
	evCfg := evalConfig(cfg, est)
	if err := s.Do(0, func(tr *train.Trainer) error {
		var err error
		if mt.evRaw, err = newRunEvaluator(tr.M, evCfg); err != nil {
			return err
		}
		if tr.Opt.EMA != nil {
			em, err := tr.M.WithWeights(tr.Opt.EMA)
			if err != nil {
				return err
			}
			mt.evEMA, err = newRunEvaluator(em, evCfg)
			return err
		}
		return nil
	}); err != nil {
		mt.Close()
		return nil, err
	}
	return mt, nil
}

func (m *multiTrainer) Step() int    { return m.s.StepIndex() }
func (m *multiTrainer) Skipped() int { return m.s.Skipped() }
func (m *multiTrainer) HasEMA() bool { return m.evEMA != nil }

func (m *multiTrainer) TrainStep(rows rowSource) (train.StepStats, error) {
	return m.s.Step(func(step uint64, first, n int, x0 []int32) ([]int32, error) {
		return nil, rows.TrainRows(x0, first, n, m.seed, step)
	})
}

func (m *multiTrainer) Save(path string, meta map[string]string) error { return m.s.Save(path, meta) }

func (m *multiTrainer) Load(path string) error {
	_, err := m.s.Load(path)
	return err
}

func (m *multiTrainer) Eval(weights string, seqs []int32) (diffusion.EvalResult, error) {
	ev := m.evRaw
	if weights == "ema" {
		ev = m.evEMA
	}
	var res diffusion.EvalResult
	err := m.s.Do(0, func(*train.Trainer) error {
		var err error
		res, err = ev.Eval(seqs, nil)
		return err
	})
	return res, err
}

func (m *multiTrainer) Agree(flags []float64) error {
	if m.procs <= 1 {
		return nil
	}
	return m.s.Do(0, func(*train.Trainer) error { return m.comms[0].AllReduce(flags, sched.Sum) })
}

func (m *multiTrainer) Close() {
	if m.s == nil {
		return
	}
	m.s.Do(0, func(*train.Trainer) error {
		if m.evRaw != nil {
			m.evRaw.Free()
		}
		if m.evEMA != nil {
			m.evEMA.Free()
		}
		return nil
	})
	m.s.Close()
	m.s = nil
}

// telemetry is NVML monitoring (cuda devices only) and the optional /metrics endpoint.
type telemetry struct {
	mon *nvml.Monitor
	srv *nvml.MetricsServer

	step, steps, loss, tokPerSec, tokens, lr, gradNorm prometheus.Gauge
	evalBits                                           *prometheus.GaugeVec
}

// testHookMetrics, when set (tests), is called with the metrics address after the last
// training step, before the endpoint closes.
var testHookMetrics func(addr string)

// nvmlIndices maps CUDA ordinals to NVML indices through CUDA_VISIBLE_DEVICES (NVML sees
// every GPU); nil (all GPUs) when the variable holds UUIDs.
func nvmlIndices(ordinals []int) []int {
	vis, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	if !ok || strings.TrimSpace(vis) == "" {
		return ordinals
	}
	var ids []int
	for _, f := range strings.Split(vis, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil
		}
		ids = append(ids, n)
	}
	var out []int
	for _, o := range ordinals {
		if o < 0 || o >= len(ids) {
			return nil
		}
		out = append(out, ids[o])
	}
	return out
}

// startTelemetry starts NVML sampling when the run uses cuda devices (on the CPU and the
// simulator it does nothing, so there is no warning) and serves /metrics when addr is set
// (in a multi-process launch, process LOCAL_RANK serves on port + LOCAL_RANK).
func startTelemetry(a *app, kind string, ordinals []int, addr string, env sched.LaunchEnv) (*telemetry, error) {
	t := &telemetry{}
	if kind == "cuda" {
		log := a.log
		t.mon = nvml.Start(nvml.Config{Devices: nvmlIndices(ordinals), Logger: &log})
	}
	if addr == "" {
		return t, nil
	}
	if env.Distributed() && env.LocalRank > 0 {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(port); err == nil && n > 0 {
				addr = net.JoinHostPort(host, strconv.Itoa(n+env.LocalRank))
			}
		}
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"rank": strconv.Itoa(env.Rank)}})
	}
	t.step = g("mdm_train_step", "Training steps completed.")
	t.steps = g("mdm_train_steps_target", "Steps of the run (--steps).")
	t.loss = g("mdm_train_loss_bits", "Training loss of the last step, bits per token.")
	t.tokPerSec = g("mdm_train_tokens_per_second", "Training throughput since the start of this invocation, tokens per second.")
	t.tokens = g("mdm_train_tokens", "Training tokens processed in this invocation.")
	t.lr = g("mdm_train_learning_rate", "Learning rate of the last update.")
	t.gradNorm = g("mdm_train_grad_norm", "Global gradient norm of the last step (before clipping).")
	t.evalBits = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mdm_eval_bound_bits", Help: "Last held-out NELBO (paper-code bound), bits per token (bits per dimension for images).",
		ConstLabels: prometheus.Labels{"rank": strconv.Itoa(env.Rank)}}, []string{"weights"})
	srv, err := nvml.ServeMetrics(addr, t.mon, t.step, t.steps, t.loss, t.tokPerSec, t.tokens, t.lr, t.gradNorm, t.evalBits)
	if err != nil {
		t.close()
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	t.srv = srv
	a.log.Info().Str("url", "http://"+srv.Addr.String()+"/metrics").Msg("serving Prometheus metrics")
	return t, nil
}

// brief is the telemetry for the progress bar ("" without NVML).
func (t *telemetry) brief() string {
	if t == nil || t.mon == nil {
		return ""
	}
	return t.mon.Brief()
}

// fields adds the NVML fields to a log event.
func (t *telemetry) fields(e *zerolog.Event) *zerolog.Event {
	if t == nil || t.mon == nil {
		return e
	}
	return t.mon.Fields(e)
}

func (t *telemetry) observeStep(step, steps int, st train.StepStats, tokens int64, tokPerSec float64) {
	if t == nil || t.srv == nil {
		return
	}
	t.step.Set(float64(step))
	t.steps.Set(float64(steps))
	t.loss.Set(st.LossBits)
	t.tokens.Set(float64(tokens))
	t.tokPerSec.Set(tokPerSec)
	t.lr.Set(st.LR)
	t.gradNorm.Set(st.GradNorm)
}

func (t *telemetry) observeEval(weights string, bits float64) {
	if t == nil || t.srv == nil {
		return
	}
	t.evalBits.WithLabelValues(weights).Set(bits)
}

// summary returns the end-of-run GPU summary ("" without NVML).
func (t *telemetry) summary(tokens int64) (nvml.Summary, bool) {
	if t == nil || t.mon == nil || !t.mon.Enabled() {
		return nvml.Summary{}, false
	}
	t.mon.Stop()
	return t.mon.Summary(tokens), true
}

func (t *telemetry) close() {
	if t == nil {
		return
	}
	if t.srv != nil {
		if testHookMetrics != nil {
			testHookMetrics(t.srv.Addr.String())
		}
		t.srv.Close()
		t.srv = nil
	}
	if t.mon != nil {
		t.mon.Stop()
	}
}
