package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// TestMatMulTiled covers products large enough to be cut into tiles (gemmTiles): tile
// edges that do not divide M or N, wide outputs cut along N, every transpose, Beta = 0 over
// NaN garbage, and the same bits for 1, 2 and 3 workers.
func TestMatMulTiled(t *testing.T) {
	r := newRand(21)
	for _, sh := range [][3]int{{517, 129, 70}, {300, 800, 31}, {64, 96, 4100}, {2000, 27, 300}} {
		m, n, k := sh[0], sh[1], sh[2]
		if tm, tn, tc := gemmTiles(m, n, k); (m+tm-1)/tm*tc < 2 {
			t.Fatalf("shape %v is one tile (%d×%d); the test needs several", sh, tm, tn)
		}
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for _, beta := range []float64{0, 0.5} {
				t.Run(fmt.Sprintf("m=%d,n=%d,k=%d,tA=%v,tB=%v,beta=%v", m, n, k, tr[0], tr[1], beta), func(t *testing.T) {
					ar, ac := m, k
					if tr[0] {
						ar, ac = k, m
					}
					br, bc := k, n
					if tr[1] {
						br, bc = n, k
					}
					a := roundTo(ops.F32, randVec(r, ar*ac, 1))
					bb := roundTo(ops.F32, randVec(r, br*bc, 1))
					o := roundTo(ops.F32, randVec(r, m*n, 1))
					if beta == 0 {
						for i := range o {
							o[i] = math.NaN()
						}
					}
					want := refMatMul(a, ar, ac, bb, br, bc, tr[0], tr[1], 1.5, beta, o)
					var first []float64
					for _, w := range []int{1, 2, 3} {
						b := New(WithWorkers(w))
						A, B, O := mk(t, b, ops.F32, a, ar, ac), mk(t, b, ops.F32, bb, br, bc), mk(t, b, ops.F32, o, m, n)
						must(t, b.MatMul(&ops.MatMulParams{Out: O, A: A, B: B, TransA: tr[0], TransB: tr[1], Alpha: 1.5, Beta: float32(beta)}))
						got := get(t, b, O)
						b.Close()
						if first == nil {
							closeTo(t, "Out", got, want, tol{1e-5, 2e-6 * float64(k)})
							first = got
							continue
						}
						for i := range got {
							if math.Float64bits(got[i]) != math.Float64bits(first[i]) {
								t.Fatalf("workers=%d: Out[%d] = %v, with 1 worker %v: tiling must not depend on the worker count", w, i, got[i], first[i])
							}
						}
					}
				})
			}
		}
	}
}
