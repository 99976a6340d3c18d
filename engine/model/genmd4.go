package model

import "github.com/mdm-gpu/mdm-gpu/engine/ops"

// GenSchedule returns GenMD4's schedule parameter schedule.w_raw [V] (raw powers; the powers
// are softplus(w_raw)), or nil for an MD4 model (Config.GenMD4 false).
func (m *Model) GenSchedule() *Param { return m.byName["schedule.w_raw"] }

// GenLoss is Loss for GenMD4 (md4.md §4): it runs ops.GenMaskedCE on the logits of the last
// Forward. Row i has clean token targets[i] and factor scales[i] (1/t_b times the batch
// normalisation); powers [V] F64 holds the schedule powers w on the backend. It returns each
// row's loss c·(Σ_j w_j μ_j − w_x(1 + log μ_x)) (float64). With grad it also writes dlogits
// (in place of the logits) for Backward, and, when dpowers ([V] F64 on the backend) is not
// nil, adds the pathwise gradient with respect to w into it.
func (m *Model) GenLoss(ws *Workspace, targets []int32, scales []float64, powers, dpowers *ops.Tensor, grad bool) ([]float64, error) {
	return m.headLoss(ws, "GenLoss", "scales", targets, scales, grad, func(tg, sc, ls *ops.Tensor) error {
		p := &ops.GenMaskedCEParams{Logits: ws.logitsV, Targets: tg, Scales: sc, Powers: powers, Loss: ls}
		if grad {
			p.DLogits = ws.logitsV
			p.DPowers = dpowers
		}
		return m.be.GenMaskedCE(p)
	})
}
