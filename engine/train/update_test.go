package train

import (
	"math"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/model"
)

// TestUpdateNonFinite: the shared end of the MD4 and GenMD4 steps. A finite loss updates
// the weights; a non-finite loss is an error naming the step unless skipping is on, in
// which case nothing is updated (no AdamW step, the update counter unchanged).
func TestUpdateNonFinite(t *testing.T) {
	m := genModel(t, cpu.New(), model.Config{Vocab: 5, SeqLen: 4, Dim: 8, Layers: 1, Heads: 2, MLPHidden: 8, TimeCond: true, CondDim: 4})
	o := genOpt(t, m)
	if _, _, _, err := update(o, false, "GenMD4 step", 3, math.NaN()); err == nil ||
		!strings.Contains(err.Error(), "GenMD4 step 3: non-finite loss NaN") || !strings.Contains(err.Error(), "--skip-nonfinite") {
		t.Errorf("NaN loss without skipping: err %v, want one naming the step and --skip-nonfinite", err)
	}
	if o.Updates != 0 {
		t.Fatalf("a refused step updated the optimiser (%d updates)", o.Updates)
	}
	_, lr, skipped, err := update(o, true, "step", 0, math.Inf(1))
	if err != nil || !skipped || o.Updates != 0 {
		t.Errorf("+Inf loss with skipping: skipped %v, err %v, %d updates; want skipped, nil, 0", skipped, err, o.Updates)
	}
	if lr != o.Cfg.LearningRate(0) {
		t.Errorf("lr %v, want the schedule's %v", lr, o.Cfg.LearningRate(0))
	}
	if _, _, skipped, err := update(o, true, "step", 0, 1.5); err != nil || skipped || o.Updates != 1 {
		t.Errorf("finite loss: skipped %v, err %v, %d updates; want an update", skipped, err, o.Updates)
	}
}
