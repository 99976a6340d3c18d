package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/traced"
)

// OpTime is the time one op (MatMul: one op per shape class) took over the profiled steps.
type OpTime struct {
	Op      string  `json:"op"`
	Calls   int     `json:"calls"`
	Seconds float64 `json:"seconds_per_step"`
	Share   float64 `json:"share"` // of the step's op time
}

// ProfileSteps runs steps training steps of s on be (wrapped in a tracing backend that
// synchronises after every op) after one warm-up step, and returns the time per step of
// each op, largest first. MatMuls are split by role: "MatMul fwd" (x·Wᵀ), "MatMul dX"
// (dY·W) and "MatMul dW" (dYᵀ·X).
func ProfileSteps(be ops.Backend, s Shape, steps int) ([]OpTime, time.Duration, error) {
	acc := map[string]*OpTime{}
	on := false
	tb := traced.New(be, nil, traced.SyncEach(), traced.WithHook(func(e traced.Event) {
		if !on || e.Op == 0 {
			return
		}
		name := e.Op.String()
		if e.Op == ops.OpMatMul {
			role := "fwd"
			for _, a := range e.Args {
				if a.Name == "TransA" && a.Value == "true" {
					role = "dW"
				}
			}
			if role == "fwd" {
				for _, a := range e.Args {
					if a.Name == "TransB" && a.Value == "false" {
						role = "dX"
					}
				}
			}
			name += " " + role
		}
		o := acc[name]
		if o == nil {
			o = &OpTime{Op: name}
			acc[name] = o
		}
		o.Calls++
		o.Seconds += e.Dur.Seconds()
	}))
	st, err := NewStepper(tb, s, 1)
	if err != nil {
		return nil, 0, err
	}
	defer st.Free()
	if _, err := st.Step(); err != nil {
		return nil, 0, err
	}
	on = true
	t0 := time.Now()
	for range max(steps, 1) {
		if _, err := st.Step(); err != nil {
			return nil, 0, err
		}
	}
	wall := time.Since(t0) / time.Duration(max(steps, 1))
	var out []OpTime
	var total float64
	for _, o := range acc {
		o.Seconds /= float64(max(steps, 1))
		o.Calls /= max(steps, 1)
		total += o.Seconds
		out = append(out, *o)
	}
	for i := range out {
		out[i].Share = out[i].Seconds / total
	}
	slices.SortFunc(out, func(a, b OpTime) int {
		if a.Seconds > b.Seconds {
			return -1
		}
		if a.Seconds < b.Seconds {
			return 1
		}
		return strings.Compare(a.Op, b.Op)
	})
	return out, wall, nil
}

// FormatProfile renders ProfileSteps' result as a text table.
func FormatProfile(p []OpTime, wall time.Duration) string {
	var b strings.Builder
	var total float64
	for _, o := range p {
		total += o.Seconds
	}
	fmt.Fprintf(&b, "%-22s %6s %10s %7s\n", "OP", "CALLS", "MS/STEP", "SHARE")
	for _, o := range p {
		fmt.Fprintf(&b, "%-22s %6d %10.2f %6.1f%%\n", o.Op, o.Calls, 1e3*o.Seconds, 100*o.Share)
	}
	fmt.Fprintf(&b, "%-22s %6s %10.2f (step wall time %.2f ms; the rest is host work between ops)\n", "total", "", 1e3*total, 1e3*wall.Seconds())
	return b.String()
}
