package cpu

// Independent float64 references, written from the Params doc comments with plain loops.
// They share no code with the backend.

import (
	"math"
	"math/big"
)

// refMatMul: Out = alpha·op(A)·op(B) + beta·Out. A is ar×ac, B is br×bc.
func refMatMul(a []float64, ar, ac int, b []float64, br, bc int, tA, tB bool, alpha, beta float64, out []float64) []float64 {
	m, k := ar, ac
	if tA {
		m, k = ac, ar
	}
	n := bc
	if tB {
		n = br
	}
	res := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for l := 0; l < k; l++ {
				var av, bv float64
				if tA {
					av = a[l*ac+i]
				} else {
					av = a[i*ac+l]
				}
				if tB {
					bv = b[j*bc+l]
				} else {
					bv = b[l*bc+j]
				}
				s += av * bv
			}
			res[i*n+j] = alpha * s
			if beta != 0 {
				res[i*n+j] += beta * out[i*n+j]
			}
		}
	}
	return res
}

func refEmbed(table []float64, d int, ids []int32) []float64 {
	out := make([]float64, len(ids)*d)
	for n, id := range ids {
		for c := 0; c < d; c++ {
			out[n*d+c] = table[int(id)*d+c]
		}
	}
	return out
}

// refNorm returns out, mean, rstd of NormParams.
func refNorm(rms bool, eps float64, x []float64, n, d int, weight, shift, scale []float64, per int) (out, mean, rstd []float64) {
	out = make([]float64, n*d)
	mean = make([]float64, n)
	rstd = make([]float64, n)
	for r := 0; r < n; r++ {
		row := x[r*d : (r+1)*d]
		mu, ms := 0.0, 0.0
		if !rms {
			for _, v := range row {
				mu += v
			}
			mu /= float64(d)
		}
		for _, v := range row {
			ms += (v - mu) * (v - mu)
		}
		ms /= float64(d)
		rs := 1 / math.Sqrt(ms+eps)
		mean[r], rstd[r] = mu, rs
		for c, v := range row {
			y := (v - mu) * rs
			if weight != nil {
				y *= weight[c]
			}
			if shift != nil {
				g := r / per
				y = y*(1+scale[g*d+c]) + shift[g*d+c]
			}
			out[r*d+c] = y
		}
	}
	return out, mean, rstd
}

// refRoPE rotates [B, L, H, Dh] data.
func refRoPE(x []float64, bs, l, h, dh int, theta float64, inverse bool) []float64 {
	out := make([]float64, len(x))
	for b := 0; b < bs; b++ {
		for pos := 0; pos < l; pos++ {
			for hh := 0; hh < h; hh++ {
				for k := 0; k < dh/2; k++ {
					ang := float64(pos) * math.Pow(theta, -2*float64(k)/float64(dh))
					if inverse {
						ang = -ang
					}
					i := ((b*l+pos)*h+hh)*dh + 2*k
					x0, x1 := x[i], x[i+1]
					out[i] = x0*math.Cos(ang) - x1*math.Sin(ang)
					out[i+1] = x0*math.Sin(ang) + x1*math.Cos(ang)
				}
			}
		}
	}
	return out
}

// refAttn returns Out [B, L, H, Dh] and LSE [B, H, L].
func refAttn(q, k, v []float64, bs, l, h, dh int, scale float64, seqLens []int32) (out, lse []float64) {
	out = make([]float64, len(q))
	lse = make([]float64, bs*h*l)
	at := func(x []float64, b, pos, hh, c int) float64 { return x[((b*l+pos)*h+hh)*dh+c] }
	for b := 0; b < bs; b++ {
		nk := l
		if seqLens != nil {
			nk = int(seqLens[b])
		}
		for hh := 0; hh < h; hh++ {
			for i := 0; i < l; i++ {
				s := make([]float64, nk)
				mx := math.Inf(-1)
				for j := 0; j < nk; j++ {
					for c := 0; c < dh; c++ {
						s[j] += at(q, b, i, hh, c) * at(k, b, j, hh, c)
					}
					s[j] *= scale
					mx = math.Max(mx, s[j])
				}
				z := 0.0
				for j := range s {
					z += math.Exp(s[j] - mx)
				}
				lse[(b*h+hh)*l+i] = mx + math.Log(z)
				for c := 0; c < dh; c++ {
					acc := 0.0
					for j := 0; j < nk; j++ {
						acc += math.Exp(s[j]-mx) / z * at(v, b, j, hh, c)
					}
					out[((b*l+i)*h+hh)*dh+c] = acc
				}
			}
		}
	}
	return out, lse
}

func refSigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// refAct evaluates the activation by name: 1 sigmoid, 2 swish, 3 gelu (tanh approximation).
func refAct(kind int, x float64) float64 {
	switch kind {
	case 1:
		return refSigmoid(x)
	case 2:
		return x * refSigmoid(x)
	default:
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
}

func refMaskedCE(logits []float64, r, v int, targets []int32, weights []float64) (loss, dlogits []float64) {
	loss = make([]float64, r)
	dlogits = make([]float64, r*v)
	for i := 0; i < r; i++ {
		row := logits[i*v : (i+1)*v]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, x)
		}
		z := 0.0
		for _, x := range row {
			z += math.Exp(x - mx)
		}
		lse := mx + math.Log(z)
		loss[i] = weights[i] * (lse - row[targets[i]])
		for j, x := range row {
			p := math.Exp(x - lse)
			if j == int(targets[i]) {
				p--
			}
			dlogits[i*v+j] = weights[i] * p
		}
	}
	return loss, dlogits
}

// refBF16 rounds x to the nearest bfloat16 (ties to even) by exact comparison of the two
// neighbouring candidates, and returns its bits.
func refBF16(x float64) uint16 {
	if math.IsNaN(x) {
		return 0x7FC0
	}
	if math.IsInf(x, 0) {
		if x > 0 {
			return 0x7F80
		}
		return 0xFF80
	}
	// Candidates: all bf16 values bracketing x (search over the 2^15 magnitudes).
	neg := math.Signbit(x)
	ax := new(big.Float).SetPrec(200).SetFloat64(math.Abs(x))
	lo, hi := uint16(0), uint16(0x7F80) // magnitudes; 0x7F80 = Inf
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		mv := new(big.Float).SetFloat64(float64(math.Float32frombits(uint32(mid) << 16)))
		if mv.Cmp(ax) <= 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	// x lies in [value(lo), value(hi)).
	lv := new(big.Float).SetPrec(200).SetFloat64(float64(math.Float32frombits(uint32(lo) << 16)))
	var hv *big.Float
	if hi == 0x7F80 {
		// Above the largest finite bf16 the next candidate is 2^128 (Inf): the midpoint
		// max + half an ulp rounds to it, as IEEE rounding does.
		hv = new(big.Float).SetPrec(200).SetFloat64(float64(math.Float32frombits(uint32(lo)<<16)) + math.Ldexp(1, 127-7))
	} else {
		hv = new(big.Float).SetPrec(200).SetFloat64(float64(math.Float32frombits(uint32(hi) << 16)))
	}
	dl := new(big.Float).SetPrec(200).Sub(ax, lv)
	dh := new(big.Float).SetPrec(200).Sub(hv, ax)
	var m uint16
	switch dl.Cmp(dh) {
	case -1:
		m = lo
	case 1:
		m = hi
	default:
		if lo%2 == 0 {
			m = lo
		} else {
			m = hi
		}
	}
	if neg {
		m |= 0x8000
	}
	return m
}
