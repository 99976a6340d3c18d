package model_test

import (
	"math"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// tiny odd-shaped configs used by the gradient checks (L=7, D=12, V=5, as in issue 2).
func tinyConfigs() map[string]model.Config {
	return map[string]model.Config{
		"adaln":                 {Vocab: 5, SeqLen: 7, Dim: 12, Layers: 2, Heads: 3, MLPHidden: 10, TimeCond: true, CondDim: 6, DType: ops.F64},
		"rmsnorm-outside-embed": {Vocab: 5, SeqLen: 7, Dim: 12, Layers: 2, Heads: 2, MLPHidden: 9, EmbedDim: 4, DType: ops.F64},
		"pixels-2x2x3": {Vocab: 7, SeqLen: 12, Dim: 12, Layers: 1, Heads: 2, MLPHidden: 10, TimeCond: true, CondDim: 4,
			PixelH: 2, PixelW: 2, PixelC: 3, DType: ops.F64},
		"swish-L1-V2": {Vocab: 2, SeqLen: 1, Dim: 8, Layers: 1, Heads: 2, MLPHidden: 6, TimeCond: true, CondDim: 4, MLPAct: ops.Swish, DType: ops.F64},
	}
}

func TestParamCounts(t *testing.T) {
	// md4.md §8.15
	cases := []struct {
		name string
		cfg  model.Config
		want int
	}{
		{"text8", model.Config{Vocab: 27, SeqLen: 256, Dim: 768, Layers: 12, Heads: 12, EmbedDim: 64, TimeCond: true, CondDim: 64}, 88_734_272},
		{"owt-small", model.Config{Vocab: 50257, SeqLen: 1024, Dim: 768, Layers: 12, Heads: 12, TimeCond: true, CondDim: 64}, 165_857_344},
		{"owt-medium", model.Config{Vocab: 50257, SeqLen: 1024, Dim: 1024, Layers: 24, Heads: 16, TimeCond: true, CondDim: 64}, 416_240_960},
	}
	for _, c := range cases {
		if got := c.cfg.NumParams(); got != c.want {
			t.Errorf("%s: got %d parameters, want %d", c.name, got, c.want)
		}
	}
	for d, want := range map[int]int{768: 2048, 1024: 2752, 1280: 3424, 128: 352} {
		if got := model.DefaultMLPHidden(d); got != want {
			t.Errorf("DefaultMLPHidden(%d) = %d, want %d", d, got, want)
		}
	}
}

// randomize fills every parameter with N(0, 0.3²) so that no gradient is trivially zero
// (MD4's init zeroes adaLN and the head).
func randomize(t *testing.T, m *model.Model, seed uint64) {
	for id, p := range m.Params {
		v := make([]float64, p.Numel())
		for i := range v {
			v[i] = 0.3 * rng.Normal64(seed, uint64(id), rng.PurposeInit, uint64(i))
		}
		if err := m.SetParam(p, v); err != nil {
			t.Fatal(err)
		}
	}
}

type batch struct {
	xt      []int32
	ts      []float64
	rows    []int32
	targets []int32
	weights []float64
}

func makeBatch(c model.Config, B int, seed uint64) batch {
	L, V := c.SeqLen, c.Vocab
	var bt batch
	for b := 0; b < B; b++ {
		bt.ts = append(bt.ts, rng.Uniform64(seed, 0, rng.PurposeTime, uint64(b)))
		for l := 0; l < L; l++ {
			i := b*L + l
			x0 := int32(rng.Uniform64(seed, 1, rng.PurposeData, uint64(i)) * float64(V))
			if rng.Uniform64(seed, 2, rng.PurposeMask, uint64(i)) < 0.5 || (b == 0 && l == 0) {
				bt.xt = append(bt.xt, int32(V))
				bt.rows = append(bt.rows, int32(i))
				bt.targets = append(bt.targets, x0)
				bt.weights = append(bt.weights, 0.5+float64(b))
			} else {
				bt.xt = append(bt.xt, x0)
			}
		}
	}
	return bt
}

func loss(t *testing.T, m *model.Model, ws *model.Workspace, bt batch, grad bool) float64 {
	t.Helper()
	if err := m.Backend().Upload(ws.XT, bt.xt); err != nil {
		t.Fatal(err)
	}
	if err := m.Forward(ws, bt.ts, nil, bt.rows); err != nil {
		t.Fatal(err)
	}
	rl, err := m.Loss(ws, bt.targets, bt.weights, grad)
	if err != nil {
		t.Fatal(err)
	}
	var s float64
	for _, v := range rl {
		s += v
	}
	return s
}

// TestModelGradientFiniteDifferences checks the whole model's backward pass against
// central finite differences of the loss, in float64, for every parameter tensor.
func TestModelGradientFiniteDifferences(t *testing.T) {
	for name, cfg := range tinyConfigs() {
		t.Run(name, func(t *testing.T) {
			be := cpu.New()
			m, err := model.New(be, cfg)
			if err != nil {
				t.Fatal(err)
			}
			randomize(t, m, 3)
			ws, err := m.NewWorkspace(2)
			if err != nil {
				t.Fatal(err)
			}
			bt := makeBatch(m.Cfg, 2, 11)
			if err := m.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
			loss(t, m, ws, bt, true)
			if err := m.Backward(ws); err != nil {
				t.Fatal(err)
			}
			const h = 1e-5
			for pi, p := range m.Params {
				grad, _ := m.GetGrad(p)
				w, _ := m.GetParam(p)
				// probe a few elements of every tensor (all of small ones)
				n := len(w)
				for k := 0; k < min(n, 6); k++ {
					i := (k*7919 + pi*31) % n
					orig := w[i]
					w[i] = orig + h
					m.SetParam(p, w)
					lp := loss(t, m, ws, bt, false)
					w[i] = orig - h
					m.SetParam(p, w)
					lm := loss(t, m, ws, bt, false)
					w[i] = orig
					m.SetParam(p, w)
					fd := (lp - lm) / (2 * h)
					if d := math.Abs(fd - grad[i]); d > 1e-6*math.Max(1, math.Abs(fd)) {
						t.Errorf("%s[%d]: analytic %.10g, finite difference %.10g", p.Name, i, grad[i], fd)
					}
				}
			}
		})
	}
}

// TestZeroInitUniform: MD4's initialisation gives logits exactly 0 (md4.md §6.1), so every
// masked row's cross-entropy is exactly ln V.
func TestZeroInitUniform(t *testing.T) {
	for _, V := range []int{27, 256} {
		cfg := model.Config{Vocab: V, SeqLen: 16, Dim: 16, Layers: 2, Heads: 2, TimeCond: true, CondDim: 8}
		m, err := model.New(cpu.New(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Init(1); err != nil {
			t.Fatal(err)
		}
		ws, _ := m.NewWorkspace(3)
		bt := makeBatch(m.Cfg, 3, 5)
		for i := range bt.weights {
			bt.weights[i] = 1
		}
		got := loss(t, m, ws, bt, false)
		want := float64(len(bt.rows)) * math.Log(float64(V))
		if math.Abs(got-want) > 1e-5*want {
			t.Errorf("V=%d: Σ CE = %v, want %d·ln V = %v", V, got, len(bt.rows), want)
		}
	}
}

// TestNoMaskedRows: a batch with nothing masked has loss 0 and all-zero gradients.
func TestNoMaskedRows(t *testing.T) {
	cfg := tinyConfigs()["adaln"]
	m, _ := model.New(cpu.New(), cfg)
	randomize(t, m, 1)
	ws, _ := m.NewWorkspace(2)
	bt := makeBatch(m.Cfg, 2, 1)
	for i, r := range bt.rows {
		bt.xt[r] = bt.targets[i]
	}
	bt.rows, bt.targets, bt.weights = nil, nil, nil
	m.ZeroGrad()
	if l := loss(t, m, ws, bt, true); l != 0 {
		t.Fatalf("loss %v, want 0", l)
	}
	if err := m.Backward(ws); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params {
		g, _ := m.GetGrad(p)
		for i, v := range g {
			if v != 0 {
				t.Fatalf("%s[%d] = %v, want 0", p.Name, i, v)
			}
		}
	}
}

// TestPixelPositionsMatter: a pixel model's output at a position depends on where the
// position is in the image (row, column, channel embeddings), so two positions holding the
// same token get different logits.
func TestPixelPositionsMatter(t *testing.T) {
	cfg := tinyConfigs()["pixels-2x2x3"]
	m, err := model.New(cpu.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	randomize(t, m, 2)
	ws, _ := m.NewWorkspace(1)
	xt := make([]int32, 12)
	for i := range xt {
		xt[i] = 7 // every position masked: only the position embeddings tell them apart
	}
	m.Backend().Upload(ws.XT, xt)
	rows := []int32{0, 1, 3, 6}
	if err := m.Forward(ws, []float64{0.5}, nil, rows); err != nil {
		t.Fatal(err)
	}
	lg, _ := model.Download(m.Backend(), ws.Logits())
	for r := 1; r < len(rows); r++ {
		same := true
		for j := 0; j < 7; j++ {
			same = same && lg[r*7+j] == lg[j]
		}
		if same {
			t.Errorf("positions %d and %d have identical logits", rows[0], rows[r])
		}
	}
	bad := cfg
	bad.PixelW = 3
	if _, err := model.New(cpu.New(), bad); err == nil || !strings.Contains(err.Error(), "H·W·C") {
		t.Errorf("a 2x3x3 image with L=12 was accepted (err %v)", err)
	}
}
