package cpu

// Reductions with four interleaved float64 accumulators. A single accumulator makes a
// row reduction latency-bound (one add every 4 cycles); four independent ones run at the
// adder's throughput. The order is fixed: element i goes to accumulator i mod 4, the
// accumulators are combined as (a0 + a1) + (a2 + a3), so results do not depend on the
// number of workers (only on the row length).

// sum4 returns Σ x[i] in float64.
func sum4[T float](x []T) float64 {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a0 += float64(x[i])
		a1 += float64(x[i+1])
		a2 += float64(x[i+2])
		a3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		a0 += float64(x[i])
	}
	return (a0 + a1) + (a2 + a3)
}

// sumF64x4 returns Σ x[i] for float64 x.
func sumF64x4(x []float64) float64 {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a0 += x[i]
		a1 += x[i+1]
		a2 += x[i+2]
		a3 += x[i+3]
	}
	for ; i < len(x); i++ {
		a0 += x[i]
	}
	return (a0 + a1) + (a2 + a3)
}

// sumSqDev4 returns Σ (x[i] − m)² in float64.
func sumSqDev4[T float](x []T, m float64) float64 {
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		d0, d1, d2, d3 := float64(x[i])-m, float64(x[i+1])-m, float64(x[i+2])-m, float64(x[i+3])-m
		a0 += d0 * d0
		a1 += d1 * d1
		a2 += d2 * d2
		a3 += d3 * d3
	}
	for ; i < len(x); i++ {
		d := float64(x[i]) - m
		a0 += d * d
	}
	return (a0 + a1) + (a2 + a3)
}

// dot4 returns Σ x[i]·y[i] in float64. len(y) ≥ len(x).
func dot4[T float](x, y []T) float64 {
	y = y[:len(x)]
	var a0, a1, a2, a3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a0 += float64(x[i]) * float64(y[i])
		a1 += float64(x[i+1]) * float64(y[i+1])
		a2 += float64(x[i+2]) * float64(y[i+2])
		a3 += float64(x[i+3]) * float64(y[i+3])
	}
	for ; i < len(x); i++ {
		a0 += float64(x[i]) * float64(y[i])
	}
	return (a0 + a1) + (a2 + a3)
}

// max4 returns the largest element of a non-empty x, or NaN if x holds one, with four
// interleaved branch-free maxima (a data-dependent branch per element mispredicts on
// attention scores).
func max4[T float](x []T) T {
	if len(x) < 8 {
		m := x[0]
		for _, v := range x[1:] {
			m = max(m, v)
		}
		return m
	}
	m0, m1, m2, m3 := x[0], x[1], x[2], x[3]
	i := 4
	for ; i+4 <= len(x); i += 4 {
		m0 = max(m0, x[i])
		m1 = max(m1, x[i+1])
		m2 = max(m2, x[i+2])
		m3 = max(m3, x[i+3])
	}
	for ; i < len(x); i++ {
		m0 = max(m0, x[i])
	}
	return max(max(m0, m1), max(m2, m3))
}
