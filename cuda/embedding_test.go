package cuda

import (
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

func TestEmbeddingParity(t *testing.T) {
	enrParity(t, []ops.Op{ops.OpEmbedFwd, ops.OpEmbedBwd})
}

// TestEmbeddingBadIDs: an id outside [0, V+1) is found on the device and reported with the
// reference's message (the smallest bad index); the backward leaves DTable untouched.
func TestEmbeddingBadIDs(t *testing.T) {
	ref := cpu.New()
	const rows = 28 // V = 27
	for _, cfg := range enrSimConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			dut := NewBackend(NewSimDevice(cfg.opts...), WithGuardBands(256))
			for _, d := range []int{5, 0} {
				for _, ids := range [][]int32{
					{0, 27, 3, 28, -1},             // first bad at 3
					append(make([]int32, 600), -5), // bad index in the third sort block
					{2147483647, 0},
				} {
					n := len(ids)
					table := make([]float32, rows*d)
					for i := range table {
						table[i] = float32(i)
					}
					fwd := func(b ops.Backend) error {
						return b.EmbedFwd(&ops.EmbedParams{Out: enrUpload(t, b, ops.F32, make([]float32, n*d), n, d),
							Table: enrUpload(t, b, ops.F32, table, rows, d), IDs: enrUpload(t, b, ops.I32, ids, n)})
					}
					enrSameError(t, fmt.Sprintf("EmbedFwd(d=%d, ids=%v)", d, ids[:min(n, 5)]), fwd(ref), fwd(dut))
					bwd := func(b ops.Backend) (*ops.Tensor, error) {
						dt := enrUpload(t, b, ops.F32, table, rows, d)
						return dt, b.EmbedBwd(&ops.EmbedBwdParams{DTable: dt, DOut: enrUpload(t, b, ops.F32, make([]float32, n*d), n, d),
							IDs: enrUpload(t, b, ops.I32, ids, n)})
					}
					_, refErr := bwd(ref)
					dtab, gotErr := bwd(dut)
					enrSameError(t, fmt.Sprintf("EmbedBwd(d=%d, ids=%v)", d, ids[:min(n, 5)]), refErr, gotErr)
					h := make([]float32, rows*d)
					if err := dut.Download(h, dtab); err != nil {
						t.Fatal(err)
					}
					for i := range h {
						if h[i] != table[i] {
							t.Errorf("EmbedBwd failed but changed DTable[%d]", i)
							break
						}
					}
				}
			}
			if err := dut.CheckGuards(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestEmbedBwdSkewed: a production-like skew (the mask id owns ~70% of the rows, so its bucket
// spans hundreds of chunks; V = 50257 needs two radix passes; D = 96 is not a multiple of
// the bf16 tile) matches the CPU reference and gives the same bits in every schedule.
func TestEmbedBwdSkewed(t *testing.T) {
	n, v, d := 20000, 50257, 96
	if testing.Short() {
		n = 5000 // 20 sort blocks: 5120 histogram entries, a scan over two tiles
	}
	ids := make([]int32, n)
	dout := make([]float32, n*d)
	s := uint64(12345)
	next := func() uint64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
	for i := range ids {
		switch r := next() % 10; {
		case r < 7:
			ids[i] = int32(v) // the mask id
		case r < 8:
			ids[i] = int32(next() % 5) // a few frequent tokens
		default:
			ids[i] = int32(next() % uint64(v+1))
		}
	}
	for i := range dout {
		dout[i] = float32(int64(next()%2001)-1000) / 1000
	}
	run := func(b ops.Backend) []float32 {
		dtable := enrUpload(t, b, ops.F32, make([]float32, (v+1)*d), v+1, d)
		if err := b.EmbedBwd(&ops.EmbedBwdParams{DTable: dtable, DOut: enrUpload(t, b, ops.F32, dout, n, d),
			IDs: enrUpload(t, b, ops.I32, ids, n)}); err != nil {
			t.Fatal(err)
		}
		h := make([]float32, (v+1)*d)
		if err := b.Download(h, dtable); err != nil {
			t.Fatal(err)
		}
		return h
	}
	want := run(cpu.New())
	var first []float32
	for _, cfg := range enrSimConfigs {
		got := run(NewBackend(NewSimDevice(cfg.opts...)))
		worst := 0.0
		for i := range want {
			// f32 sums of up to ~0.7·n terms of size ≤ 1, against float64 sums.
			if e := math.Abs(float64(got[i]-want[i])) / (1e-4 + 1e-5*math.Abs(float64(want[i]))); e > worst {
				worst = e
			}
		}
		if worst > 1 {
			t.Errorf("%s: error %.2f× the tolerance", cfg.name, worst)
		}
		t.Logf("%s: worst error %.3f× the tolerance", cfg.name, worst)
		if first == nil {
			first = got
			continue
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(first[i]) {
				t.Errorf("%s: DTable[%d] = %v differs from the forward-order run's %v", cfg.name, i, got[i], first[i])
				break
			}
		}
	}
}
