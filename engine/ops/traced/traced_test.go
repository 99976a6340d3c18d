package traced_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/opstest"
	"github.com/mdm-gpu/mdm-gpu/engine/ops/traced"
)

func alloc(t *testing.T, b ops.Backend, dt ops.DType, shape ...int) *ops.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestLogLine(t *testing.T) {
	var buf bytes.Buffer
	tb := traced.New(opstest.NewNull(), &buf)
	w := alloc(t, tb, ops.F32, 3, 4)
	w.Name = "blocks.0.attn.q.weight"
	p := &ops.MatMulParams{Out: alloc(t, tb, ops.F32, 2, 3), A: alloc(t, tb, ops.F32, 2, 4), B: w, TransB: true, Alpha: 1}
	if err := tb.MatMul(p); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, want := range []string{
		"traced: #1 MatMul(Out=f32[2 3], A=f32[2 4], B=f32[3 4](blocks.0.attn.q.weight), TransA=false, TransB=true, Alpha=1, Beta=0) ",
		"\n",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q does not contain %q", line, want)
		}
	}
	ev := tb.Recent()
	if len(ev) != 1 || ev[0].Op != ops.OpMatMul || ev[0].Dur <= 0 || ev[0].Err != nil || len(ev[0].Args) != 7 {
		t.Fatalf("got events %+v, want one successful MatMul with 7 args", ev)
	}
	if a := ev[0].Args[2]; a.Name != "B" || a.DType != ops.F32 || len(a.Shape) != 2 || a.Value != "blocks.0.attn.q.weight" {
		t.Errorf("got arg %+v", a)
	}
}

func TestRingAndErrors(t *testing.T) {
	var hooked []traced.Event
	tb := traced.New(opstest.NewNull(), nil, traced.RingSize(3), traced.AnnotateErrors(),
		traced.WithHook(func(e traced.Event) { hooked = append(hooked, e) }))
	x := alloc(t, tb, ops.F32, 5)
	for i := 0; i < 4; i++ {
		if err := tb.ActFwd(&ops.ActParams{Act: ops.GELU, Out: x, X: x}); err != nil {
			t.Fatal(err)
		}
	}
	// A failing op: Validate rejects an unknown activation.
	err := tb.ActFwd(&ops.ActParams{Act: 9, Out: x, X: x})
	var oe *ops.OpError
	if !errors.As(err, &oe) || !errors.Is(err, ops.ErrValue) || oe.Op != ops.OpActFwd {
		t.Fatalf("annotated error %v lost its *ops.OpError", err)
	}
	msg := err.Error()
	for _, want := range []string{"ops.ActFwd: Act: invalid value: unknown activation Activation(9); recent ops:\n#3 ActFwd(",
		"#4 ActFwd(", "#5 ActFwd(Act=Activation(9), Out=f32[5], X=f32[5]) "} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message\n%s\ndoes not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "#2 ") {
		t.Errorf("error message names an op older than the ring: %s", msg)
	}
	ev := tb.Recent()
	if len(ev) != 3 || ev[0].Seq != 3 || ev[2].Seq != 5 || ev[2].Err == nil {
		t.Fatalf("got ring %v, want events 3..5 with the last failed", ev)
	}
	if len(hooked) != 5 {
		t.Errorf("hook saw %d events, want 5", len(hooked))
	}
}

// failingSync is a device whose asynchronous error shows up at Sync.
type failingSync struct {
	ops.Backend
	syncs int
}

func (f *failingSync) Sync() error {
	f.syncs++
	return errors.New("CUDA_ERROR_ILLEGAL_ADDRESS")
}

func TestSync(t *testing.T) {
	fs := &failingSync{Backend: opstest.NewNull()}
	tb := traced.New(fs, nil, traced.AnnotateErrors())
	x := alloc(t, tb, ops.F32, 2, 3)
	if err := tb.GLUFwd(&ops.GLUParams{Act: ops.Sigmoid, Out: x, A: x, B: x}); err != nil {
		t.Fatal(err)
	}
	err := tb.Sync()
	if err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_ILLEGAL_ADDRESS; recent ops:\n#1 GLUFwd(") || !strings.Contains(err.Error(), "#2 Sync ") {
		t.Fatalf("got %v, want the Sync error with the recent ops", err)
	}

	// SyncEach attributes the error to the op.
	fs.syncs = 0
	tb = traced.New(fs, nil, traced.SyncEach())
	err = tb.GLUFwd(&ops.GLUParams{Act: ops.Sigmoid, Out: x, A: x, B: x})
	if fs.syncs != 1 || err == nil || tb.Recent()[0].Op != ops.OpGLUFwd || tb.Recent()[0].Err == nil {
		t.Fatalf("SyncEach: %d syncs, error %v; want the op to fail with the Sync error", fs.syncs, err)
	}
}

// TestEveryOpIsTraced runs one case per op through the wrapper.
func TestEveryOpIsTraced(t *testing.T) {
	done := map[ops.Op]bool{}
	for _, c := range opstest.Cases() {
		if done[c.Op] || c.Size == opstest.Large {
			continue
		}
		tb := traced.New(opstest.NewNull(), nil)
		inst, err := c.Setup(tb)
		if err != nil {
			t.Fatal(err)
		}
		if err := inst.Run(); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		inst.Free()
		ev := tb.Recent()
		if len(ev) != 1 || ev[0].Op != c.Op {
			t.Errorf("%s: got events %v, want one %v", c.Name, ev, c.Op)
		}
		done[c.Op] = true
	}
	if len(done) != len(ops.AllOps()) {
		t.Errorf("traced %d ops, want %d", len(done), len(ops.AllOps()))
	}
}

type guarded struct{ ops.Backend }

func (guarded) CheckGuards() error { return nil }

func TestUnwrap(t *testing.T) {
	if opstest.FindGuardChecker(traced.New(guarded{opstest.NewNull()}, nil)) == nil {
		t.Fatal("the GuardChecker of the wrapped backend is not found through traced")
	}
}
