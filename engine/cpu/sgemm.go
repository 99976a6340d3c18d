package cpu

import (
	"sync"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu/internal/vmath"
)

// sgemm is the pure-Go build's float32 GEMM kernel for one gemm tile on CPUs with AVX2
// and FMA: the blocked algorithm of Goto and van de Geijn around the assembly
// micro-kernels vmath.Sgemm6x16(R). op(B) is packed in blocks of sgKC rows × up to sgNC
// columns (16-column panels, zero-padded); A is read in place, 6 rows at a time (only the
// last, partial panel is packed); the micro-kernel accumulates 6×16 outputs over the sgKC
// values of the inner dimension in float32 with fused multiply-adds. Every output element
// sums its products in the same order (p = 0..k−1, in blocks of sgKC) whatever the tile,
// so tiling and worker count do not change a bit. Edge tiles go through a 6×16 buffer.
//
// Where the CPU lacks AVX2 or FMA (or in purego builds), tiles use gonum's serial Sgemm.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	bufs := sgemmPool.Get().(*sgemmBufs)
	defer sgemmPool.Put(bufs)
	for jc := 0; jc < n; jc += sgNC {
		nc := min(sgNC, n-jc)
		for pc := 0; pc < k; pc += sgKC {
			kc := min(sgKC, k-pc)
			bet := beta
			if pc > 0 {
				bet = 1 // later blocks accumulate into C
			}
			packB(bufs.b[:], tB, b, ldb, pc, kc, jc, nc)
			for ir := 0; ir < m; ir += 6 {
				mr := min(6, m-ir)
				// Full panels of A are read in place (columns of a transposed A are
				// contiguous; rows of a plain one are read through six row pointers); the
				// edge panel is packed, zero-padded.
				if mr < 6 {
					packA(bufs.a[:], tA, a, lda, ir, mr, pc, kc)
				}
				for jr := 0; jr < nc; jr += 16 {
					nr := min(16, nc-jr)
					bp := bufs.b[(jr/16)*kc*16:]
					ci := ir*ldc + jc + jr
					cc, cl, al, be := c[ci:], ldc, alpha, bet
					edge := mr < 6 || nr < 16
					if edge {
						cc, cl, al, be = bufs.t[:], 16, 1, 0
					}
					switch {
					case mr < 6:
						vmath.Sgemm6x16(kc, bufs.a[:], 6, bp, cc, cl, al, be)
					case tA: // op(A)(i, p) = a[p·lda + i]
						vmath.Sgemm6x16(kc, a[pc*lda+ir:], lda, bp, cc, cl, al, be)
					default:
						vmath.Sgemm6x16R(kc, a[ir*lda+pc:], lda, bp, cc, cl, al, be)
					}
					if !edge {
						continue
					}
					t := bufs.t[:]
					for r := range mr {
						row := c[ci+r*ldc : ci+r*ldc+nr]
						for q := range row {
							v := alpha * t[r*16+q]
							if bet != 0 {
								v += bet * row[q]
							}
							row[q] = v
						}
					}
				}
			}
		}
	}
}

// Blocking of sgemm: a packed op(B) block (≤ 256 × 384 floats, 384 KiB) stays in L2 while
// the 6-row panels of A stream past it (a 6×256 panel, 6 KiB, in L1).
const (
	sgKC = 256
	sgNC = 384
)

type sgemmBufs struct {
	a [6 * sgKC]float32 // the packed edge panel of A
	b [sgNC * sgKC]float32
	t [6 * 16]float32
}

var sgemmPool = sync.Pool{New: func() any { return new(sgemmBufs) }}

// packA packs rows [i0, i0+mc) × columns [p0, p0+kc) of op(A) into 6-row panels: panel q,
// element (p, r) at q·6·kc + p·6 + r; rows beyond mc are zero.
func packA(dst []float32, tA bool, a []float32, lda, i0, mc, p0, kc int) {
	// op(A)(i, p) is a[p·lda + i] when transposed (a panel's 6 values of each p contiguous).
	packPanels(dst, 6, tA, a, lda, p0, kc, i0, mc)
}

// packB packs rows [p0, p0+kc) × columns [j0, j0+nc) of op(B) into 16-column panels:
// panel q, element (p, c) at q·16·kc + p·16 + c; columns beyond nc are zero.
func packB(dst []float32, tB bool, b []float32, ldb, p0, kc, j0, nc int) {
	// op(B)(p, j) is b[p·ldb + j] when not transposed.
	packPanels(dst, 16, !tB, b, ldb, p0, kc, j0, nc)
}

// packPanels packs the kc × n block (p, j) ∈ [0, kc) × [0, n) of a matrix x into panels of
// w columns: panel q, element (p, c) at q·w·kc + p·w + c, columns beyond n zero. The block's
// element (p, j) is x[(p0+p)·ld + j0+j] when contiguous (a panel row is one copy), else
// x[(j0+j)·ld + p0+p].
func packPanels(dst []float32, w int, contiguous bool, x []float32, ld, p0, kc, j0, n int) {
	for q := 0; q < n; q += w {
		pan := dst[(q/w)*w*kc : (q/w+1)*w*kc]
		cols := min(w, n-q)
		if contiguous {
			for p := range kc {
				row := x[(p0+p)*ld+j0+q : (p0+p)*ld+j0+q+cols]
				out := pan[p*w : p*w+w]
				copy(out, row)
				clear(out[cols:])
			}
			continue
		}
		for c := range w {
			if c >= cols {
				for p := range kc {
					pan[p*w+c] = 0
				}
				continue
			}
			src := x[(j0+q+c)*ld+p0 : (j0+q+c)*ld+p0+kc]
			for p, v := range src {
				pan[p*w+c] = v
			}
		}
	}
}
