package train

import (
	"fmt"

	"github.com/mdm-gpu/mdm-gpu/engine/model"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/rng"
)

// runner computes the masked, weighted cross-entropy of batches of sequences on a
// model: upload x0 → MaskTokens on the device → find the masked rows → Forward → MaskedCE
// (→ Backward). Training and evaluation share it.
type runner struct {
	m     *model.Model
	mb    int // sequences per pass
	ws    *model.Workspace
	x0T   *ops.Tensor // [mb, L] I32
	probT *ops.Tensor // [mb] F64
	lensT *ops.Tensor // [mb] I32

	xt      []int32
	rows    []int32
	targets []int32
	rowW    []float64
	rowSeq  []int
}

func newRunner(m *model.Model, mb int) (*runner, error) {
	be := m.Backend()
	ws, err := m.NewWorkspace(mb)
	if err != nil {
		return nil, err
	}
	r := &runner{m: m, mb: mb, ws: ws, xt: make([]int32, mb*m.Cfg.SeqLen)}
	if r.x0T, err = be.Alloc(ops.I32, mb, m.Cfg.SeqLen); err == nil {
		if r.probT, err = be.Alloc(ops.F64, mb); err == nil {
			r.lensT, err = be.Alloc(ops.I32, mb)
		}
	}
	if err != nil {
		r.free()
		return nil, err
	}
	return r, nil
}

func (r *runner) free() {
	be := r.m.Backend()
	r.ws.Free()
	for _, t := range []*ops.Tensor{r.x0T, r.probT, r.lensT} {
		if t != nil {
			be.Free(t)
		}
	}
}

// pass describes one batch of passes over global-batch sequences [0, B).
type pass struct {
	x0      []int32   // [B·L]
	seqLens []int32   // [B] or nil
	ts      []float64 // [B] times
	probs   []float64 // [B] mask probabilities 1−α(t)
	weights []float64 // [B] MaskedCE row weights of each sequence
	seed    uint64
	step    uint64
	purpose rng.Purpose
	grad    bool
	// first is the global-batch index of x0's first sequence: masks are Philox-addressed by
	// the global position (IndexOffset = (first + b0)·L), so a device that owns rows
	// [first, first+B) of a larger batch draws exactly the masks the whole batch would.
	first int
}

// run processes p in micro-batches of r.mb sequences; seqLoss[b] receives the sum of the
// weighted row losses of sequence b. It returns the number of masked positions.
func (r *runner) run(p *pass, seqLoss []float64) (int, error) {
	m, be := r.m, r.m.Backend()
	L, V := m.Cfg.SeqLen, m.Cfg.Vocab
	B := len(p.ts)
	if B%r.mb != 0 || len(p.x0) != B*L {
		return 0, fmt.Errorf("train: batch of %d sequences (%d tokens) is not a multiple of the pass size %d × L=%d", B, len(p.x0), r.mb, L)
	}
	masked := 0
	for b0 := 0; b0 < B; b0 += r.mb {
		var lens []int32
		var lensT *ops.Tensor
		if p.seqLens != nil {
			lens = p.seqLens[b0 : b0+r.mb]
			if err := be.Upload(r.lensT, lens); err != nil {
				return 0, err
			}
			lensT = r.lensT
		}
		if err := be.Upload(r.x0T, p.x0[b0*L:(b0+r.mb)*L]); err != nil {
			return 0, err
		}
		if err := be.Upload(r.probT, p.probs[b0:b0+r.mb]); err != nil {
			return 0, err
		}
		err := be.MaskTokens(&ops.MaskParams{XT: r.ws.XT, X0: r.x0T, MaskProb: r.probT, SeqLens: lensT,
			MaskID: int32(V), Seed: p.seed, Step: p.step, Purpose: uint8(p.purpose), IndexOffset: uint64((p.first + b0) * L)})
		if err != nil {
			return 0, err
		}
		if err := be.Download(r.xt, r.ws.XT); err != nil {
			return 0, err
		}
		r.rows, r.targets, r.rowW, r.rowSeq = r.rows[:0], r.targets[:0], r.rowW[:0], r.rowSeq[:0]
		for i, z := range r.xt {
			if z == int32(V) {
				b := b0 + i/L
				r.rows = append(r.rows, int32(i))
				r.targets = append(r.targets, p.x0[b0*L+i])
				r.rowW = append(r.rowW, p.weights[b])
				r.rowSeq = append(r.rowSeq, b)
			}
		}
		masked += len(r.rows)
		if err := m.Forward(r.ws, p.ts[b0:b0+r.mb], lens, r.rows); err != nil {
			return 0, err
		}
		rowLoss, err := m.Loss(r.ws, r.targets, r.rowW, p.grad)
		if err != nil {
			return 0, err
		}
		for i, l := range rowLoss {
			seqLoss[r.rowSeq[i]] += l
		}
		if p.grad {
			if err := m.Backward(r.ws); err != nil {
				return 0, err
			}
		}
	}
	return masked, nil
}

// checkTokens refuses ids outside [0, V) in clean data (the mask id V included).
func checkTokens(x0 []int32, V int, what string) error {
	for i, v := range x0 {
		if v < 0 || int(v) >= V {
			if int(v) == V {
				return fmt.Errorf("train: %s contains the mask id %d at position %d; clean data must use ids in [0, %d)", what, v, i, V)
			}
			return fmt.Errorf("train: %s has token id %d at position %d, outside [0, %d)", what, v, i, V)
		}
	}
	return nil
}
