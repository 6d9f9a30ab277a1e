package gguf

import "math"

// K-quants: super-blocks of 256 elements with 6- or 8-bit sub-block scales.
// Layouts (byte order) and formulas follow ggml-common.h and ggml-quants.c;
// see the floating-point note in quant.go.

// groupMaxEps is GROUP_MAX_EPS: a sub-block whose largest magnitude is below
// it is treated as all zeros.
const groupMaxEps = float32(1e-15)

// nearestInt rounds to the nearest integer, ties to even, with the
// reference's float trick (add 1.5·2²³ and read the mantissa); valid for
// |f| ≤ 4194303, and reproducing the C code's result outside that range.
func nearestInt(f float32) int {
	v := float32(f) + 12582912
	return int(math.Float32bits(v)&0x007fffff) - 0x00400000
}

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// getScaleMinK4 unpacks sub-block j's 6-bit scale and min from the 12 scale
// bytes of a Q4_K/Q5_K block.
func getScaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d:f16, dmin:f16.
func dequantQ2_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/qkK; i++ {
		b := src[84*i : 84*i+84]
		scales, qs := b[:16], b[16:80]
		d, dmin := f16At(b[80:]), f16At(b[82:])
		y := dst[qkK*i : qkK*i+qkK]
		is, k := 0, 0
		for n := 0; n < qkK; n += 128 {
			q := qs[n/4 : n/4+32]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					sc := scales[is]
					is++
					dl := float32(d * float32(sc&0xF))
					ml := float32(dmin * float32(sc>>4))
					for l := 0; l < 16; l++ {
						y[k] = float32(dl*float32((q[16*half+l]>>shift)&3)) - ml
						k++
					}
				}
			}
		}
	}
}

// q3Scale returns the k-th 6-bit scale of a Q3_K block, minus 32.
func q3Scale(s []byte, k int) int {
	var lo uint8
	if k < 8 {
		lo = s[k] & 0xF
	} else {
		lo = s[k-8] >> 4
	}
	hi := (s[8+k%4] >> (2 * (k / 4))) & 3
	return int(lo|hi<<4) - 32
}

// Q3_K: hmask[32], qs[64], scales[12], d:f16.
func dequantQ3_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/qkK; i++ {
		b := src[110*i : 110*i+110]
		hm, qs, scales := b[:32], b[32:96], b[96:108]
		d := f16At(b[108:])
		y := dst[qkK*i : qkK*i+qkK]
		is, k := 0, 0
		m := uint8(1)
		for n := 0; n < qkK; n += 128 {
			q := qs[n/4 : n/4+32]
			for shift := uint(0); shift < 8; shift += 2 {
				for half := 0; half < 2; half++ {
					dl := d * float32(q3Scale(scales, is))
					is++
					for l := 16 * half; l < 16*half+16; l++ {
						v := int((q[l] >> shift) & 3)
						if hm[l]&m == 0 {
							v -= 4
						}
						y[k] = dl * float32(v)
						k++
					}
				}
				m <<= 1
			}
		}
	}
}

// Q4_K: d:f16, dmin:f16, scales[12], qs[128].
func dequantQ4_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/qkK; i++ {
		b := src[144*i : 144*i+144]
		d, dmin := f16At(b), f16At(b[2:])
		scales, qs := b[4:16], b[16:144]
		y := dst[qkK*i : qkK*i+qkK]
		for c := 0; c < 4; c++ {
			sc1, m1 := getScaleMinK4(2*c, scales)
			sc2, m2 := getScaleMinK4(2*c+1, scales)
			d1, mm1 := float32(d*float32(sc1)), float32(dmin*float32(m1))
			d2, mm2 := float32(d*float32(sc2)), float32(dmin*float32(m2))
			q := qs[32*c : 32*c+32]
			o := y[64*c : 64*c+64]
			for l := 0; l < 32; l++ {
				o[l] = float32(d1*float32(q[l]&0xF)) - mm1
				o[l+32] = float32(d2*float32(q[l]>>4)) - mm2
			}
		}
	}
}

// Q5_K: d:f16, dmin:f16, scales[12], qh[32], qs[128].
func dequantQ5_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/qkK; i++ {
		b := src[176*i : 176*i+176]
		d, dmin := f16At(b), f16At(b[2:])
		scales, qh, qs := b[4:16], b[16:48], b[48:176]
		y := dst[qkK*i : qkK*i+qkK]
		u1, u2 := uint8(1), uint8(2)
		for c := 0; c < 4; c++ {
			sc1, m1 := getScaleMinK4(2*c, scales)
			sc2, m2 := getScaleMinK4(2*c+1, scales)
			d1, mm1 := float32(d*float32(sc1)), float32(dmin*float32(m1))
			d2, mm2 := float32(d*float32(sc2)), float32(dmin*float32(m2))
			q := qs[32*c : 32*c+32]
			o := y[64*c : 64*c+64]
			for l := 0; l < 32; l++ {
				v1, v2 := int(q[l]&0xF), int(q[l]>>4)
				if qh[l]&u1 != 0 {
					v1 += 16
				}
				if qh[l]&u2 != 0 {
					v2 += 16
				}
				o[l] = float32(d1*float32(v1)) - mm1
				o[l+32] = float32(d2*float32(v2)) - mm2
			}
			u1 <<= 2
			u2 <<= 2
		}
	}
}

// Q6_K: ql[128], qh[64], scales[16] int8, d:f16.
func dequantQ6_K(dst []float32, src []byte) {
	for i := 0; i < len(dst)/qkK; i++ {
		b := src[210*i : 210*i+210]
		d := f16At(b[208:])
		for h := 0; h < 2; h++ {
			ql, qh, sc := b[64*h:64*h+64], b[128+32*h:128+32*h+32], b[192+8*h:192+8*h+8]
			y := dst[qkK*i+128*h : qkK*i+128*h+128]
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int(ql[l]&0xF|((qh[l]>>0)&3)<<4) - 32
				q2 := int(ql[l+32]&0xF|((qh[l]>>2)&3)<<4) - 32
				q3 := int(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
				q4 := int(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
				y[l] = float32(d*float32(int8(sc[is]))) * float32(q1)
				y[l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
				y[l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
				y[l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
			}
		}
	}
}

// makeQKX2 is make_qkx2_quants: a weighted least-squares search for the
// scale and (non-positive) min of an asymmetric nmax-level quantization of x,
// over nstep+1 candidate inverse scales. It fills L with the levels and
// returns the scale and the negated min (≥ 0). Laux is scratch of len(x).
func makeQKX2(nmax int, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int, useMad bool) (scale, negMin float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -lo
	}
	fmax := float32(nmax)
	iscale := fmax / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i := 0; i < n; i++ {
		l := clampInt(nearestInt(iscale*(x[i]-lo)), 0, nmax)
		L[i] = uint8(l)
		diff := float32(scale*float32(L[i])) + lo - x[i]
		bestErr += float32(weights[i] * lossOf(diff, useMad))
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := clampInt(nearestInt(iscale*(x[i]-lo)), 0, nmax)
			Laux[i] = uint8(l)
			w := weights[i]
			lf := float32(l)
			wl := float32(w * lf)
			sumL += wl
			sumL2 += float32(wl * lf)
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var cur float32
			for i := 0; i < n; i++ {
				diff := float32(thisScale*float32(Laux[i])) + thisMin - x[i]
				cur += float32(weights[i] * lossOf(diff, useMad))
			}
			if cur < bestErr {
				copy(L[:n], Laux[:n])
				bestErr = cur
				scale = thisScale
				lo = thisMin
			}
		}
	}
	return scale, -lo
}

// lossOf is the per-element loss of make_qkx2_quants: |diff| or diff².
func lossOf(diff float32, useMad bool) float32 {
	if useMad {
		return abs32(diff)
	}
	return diff * diff
}

// extremeOrZero returns the element of x largest in magnitude, with which
// the symmetric searches (makeQX, makeQ3) start; when that magnitude is
// below groupMaxEps the group counts as all zeros: L's levels are cleared
// and ok is false.
func extremeOrZero(x []float32, L []int8) (maxv float32, ok bool) {
	maxv, amax := absMax(x)
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0, false
	}
	return maxv, true
}

// makeQX is make_qx_quants with rmse_type 1 and no importance weights
// (weights x²): a symmetric nmax-level quantization of x searched over 19
// candidate scales. It fills L with levels + nmax and returns the scale.
func makeQX(nmax int, x []float32, L []int8) float32 {
	maxv, ok := extremeOrZero(x, L)
	if !ok {
		return 0
	}
	fmax := float32(nmax)
	iscale := -fmax / maxv
	for i, v := range x {
		L[i] = int8(qxLevel(iscale, v, nmax) + nmax)
	}
	sumlx, suml2 := qxSums(x, iscale, nmax)
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fmax + float32(float32(0.1)*float32(is))) / maxv
		sumlx, suml2 = qxSums(x, iscale, nmax)
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				L[i] = int8(qxLevel(iscale, v, nmax) + nmax)
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// qxLevel is make_qx_quants' level of v at inverse scale iscale.
func qxLevel(iscale, v float32, nmax int) int {
	return clampInt(nearestInt(iscale*v), -nmax, nmax-1)
}

// qxSums returns Σ w·x·l and Σ w·l² with weights w = x², as make_qx_quants
// accumulates them (in order, in float32).
func qxSums(x []float32, iscale float32, nmax int) (sumlx, suml2 float32) {
	for _, v := range x {
		l := float32(qxLevel(iscale, v, nmax))
		w := float32(v * v)
		sumlx += float32(float32(w*v) * l)
		suml2 += float32(float32(w*l) * l)
	}
	return sumlx, suml2
}

// packQ2 stores 256 two-bit levels the way Q2_K and Q3_K lay out qs: in each
// 128-element half, byte l holds elements l, l+32, l+64 and l+96 from the
// lowest bits up. The levels must be below 4.
func packQ2(qs []byte, L []uint8) {
	for j := 0; j < qkK; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

// quantQ2_K is quantize_row_q2_K_ref: a scale and min per 16 elements from
// makeQKX2 on 4 levels, weighted by |x| with absolute-error loss, each
// stored in 4 bits against the block's largest.
func quantQ2_K(dst []byte, src []float32) {
	var (
		L       [qkK]uint8
		Laux    [16]uint8
		weights [16]float32
		mins    [16]float32
		scales  [16]float32
	)
	for i := 0; i < len(src)/qkK; i++ {
		x := src[qkK*i : qkK*i+qkK]
		b := dst[84*i : 84*i+84]
		var maxScale, maxMin float32
		for j := 0; j < 16; j++ {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				weights[l] = abs32(v)
			}
			scales[j], mins[j] = makeQKX2(3, xs, weights[:], L[16*j:16*j+16], Laux[:], -0.5, 0.1, 15, true)
			if scales[j] > maxScale {
				maxScale = scales[j]
			}
			if mins[j] > maxMin {
				maxMin = mins[j]
			}
		}
		// The reference stores the 4-bit codes unclamped, truncated to
		// their byte (a negative scale or min would wrap); so does this.
		sc := b[:16]
		clear(sc)
		if maxScale > 0 {
			iscale := 15 / maxScale
			for j := range sc {
				sc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			putF16(b[80:], maxScale/15)
		} else {
			putF16(b[80:], 0)
		}
		if maxMin > 0 {
			iscale := 15 / maxMin
			for j := range sc {
				sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
			}
			putF16(b[82:], maxMin/15)
		} else {
			putF16(b[82:], 0)
		}
		d, dmin := f16At(b[80:]), f16At(b[82:])
		for j := 0; j < 16; j++ {
			dj := float32(d * float32(sc[j]&0xF))
			if dj == 0 {
				continue
			}
			dm := float32(dmin * float32(sc[j]>>4))
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = uint8(clampInt(nearestInt((x[16*j+ii]+dm)/dj), 0, 3))
			}
		}
		packQ2(b[16:80], L[:])
	}
}

// makeQ3 is make_q3_quants with do_rmse: a symmetric nmax-level quantization
// of x, started at the scale that maps the extreme element to −nmax and then
// refined by moving single levels while that raises the x²-weighted fit
// (Σwxl)²/Σwl², in at most five sweeps. It fills L with levels + nmax and
// returns the least-squares scale.
func makeQ3(nmax int, x []float32, L []int8) float32 {
	maxv, ok := extremeOrZero(x, L)
	if !ok {
		return 0
	}
	iscale := -float32(nmax) / maxv
	var sumlx, suml2 float32
	for i, v := range x {
		l := qxLevel(iscale, v, nmax)
		L[i] = int8(l)
		w, lf := float32(v*v), float32(l)
		sumlx += float32(float32(w*v) * lf)
		suml2 += float32(float32(w*lf) * lf)
	}
	for range 5 {
		changed := false
		for i, v := range x {
			w, li := float32(v*v), float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			if !(slx > 0) {
				continue
			}
			sl2 := suml2 - float32(float32(w*li)*li)
			nl := clampInt(nearestInt(float32(v*sl2)/slx), -nmax, nmax-1)
			if nl == int(L[i]) {
				continue
			}
			nf := float32(nl)
			slx += float32(float32(w*v) * nf)
			sl2 += float32(float32(w*nf) * nf)
			if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
				L[i], sumlx, suml2 = int8(nl), slx, sl2
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	for i := range L[:len(x)] {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// putQ3Scale ORs the biased 6-bit scale l (0..63) into slot k of zeroed
// Q3_K scale bytes, where q3Scale reads it back.
func putQ3Scale(s []byte, k int, l uint8) {
	if k < 8 {
		s[k] |= l & 0xF
	} else {
		s[k-8] |= (l & 0xF) << 4
	}
	s[8+k%4] |= (l >> 4) << (2 * (k / 4))
}

// quantQ3_K is quantize_row_q3_K_ref: a signed scale per 16 elements from
// makeQ3 on 8 levels, stored in 6 bits against the block's largest in
// magnitude; the levels' third bit goes to hmask.
func quantQ3_K(dst []byte, src []float32) {
	var (
		L      [qkK]int8
		low    [qkK]uint8
		scales [16]float32
	)
	for i := 0; i < len(src)/qkK; i++ {
		x := src[qkK*i : qkK*i+qkK]
		b := dst[110*i : 110*i+110]
		hm, sc := b[:32], b[96:108]
		for j := 0; j < 16; j++ {
			scales[j] = makeQ3(4, x[16*j:16*j+16], L[16*j:16*j+16])
		}
		maxScale, _ := absMax(scales[:])
		clear(sc)
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := 0; j < 16; j++ {
				// The reference keeps the rounded code in an int8 before clamping.
				l := clampInt(int(int8(nearestInt(iscale*scales[j]))), -32, 31) + 32
				putQ3Scale(sc, j, uint8(l))
			}
			putF16(b[108:], 1/iscale)
		} else {
			putF16(b[108:], 0)
		}
		d := f16At(b[108:])
		for j := 0; j < 16; j++ {
			dj := d * float32(q3Scale(sc, j))
			if dj == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = int8(clampInt(nearestInt(x[16*j+ii]/dj), -4, 3) + 4)
			}
		}
		clear(hm)
		for j, l := range L {
			low[j] = uint8(l)
			if l > 3 {
				hm[j%32] |= 1 << (j / 32)
				low[j] -= 4
			}
		}
		packQ2(b[32:96], low[:])
	}
}

// quantK4Levels is the part of quantize_row_q4_K_ref and
// quantize_row_q5_K_ref that the two share. Each 32-element sub-block of the
// super-block x gets a scale and min from makeQKX2 (nmax levels, weighted by
// the sub-block's RMS plus |x|, candidates rmin + 0.1·k for k ≤ nstep); the
// eight of each are stored in 6 bits against the largest, and the elements
// are then requantized to 0..nmax against the scales as stored. It writes
// d, dmin and the 12 scale bytes to hdr (16 bytes) and the levels to L.
func quantK4Levels(hdr []byte, x []float32, L *[qkK]uint8, nmax int, rmin float32, nstep int) {
	var (
		Laux    [32]uint8
		weights [32]float32
		mins    [8]float32
		scales  [8]float32
	)
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrt32(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2(nmax, xs, weights[:], L[32*j:32*j+32], Laux[:], rmin, 0.1, nstep, false)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := hdr[4:16]
	clear(sc)
	for j := 0; j < 8; j++ {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xF | (lm&0xF)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putF16(hdr, maxScale/63)
	putF16(hdr[2:], maxMin/63)
	d, dmin := f16At(hdr), f16At(hdr[2:])
	for j := 0; j < 8; j++ {
		s, m := getScaleMinK4(j, sc)
		dj := float32(d * float32(s))
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for ii := 0; ii < 32; ii++ {
			L[32*j+ii] = uint8(clampInt(nearestInt((x[32*j+ii]+dm)/dj), 0, nmax))
		}
	}
}

// quantQ4_K is quantize_row_q4_K_ref.
func quantQ4_K(dst []byte, src []float32) {
	var L [qkK]uint8
	for i := 0; i < len(src)/qkK; i++ {
		b := dst[144*i : 144*i+144]
		quantK4Levels(b[:16], src[qkK*i:qkK*i+qkK], &L, 15, -1, 20)
		q := b[16:144]
		for j := 0; j < qkK; j += 64 {
			for l := 0; l < 32; l++ {
				q[j/2+l] = L[j+l] | L[j+l+32]<<4
			}
		}
	}
}

// quantQ5_K is quantize_row_q5_K_ref: Q4_K's search on 32 levels, with the
// fifth bit of each level in qh.
func quantQ5_K(dst []byte, src []float32) {
	var L [qkK]uint8
	for i := 0; i < len(src)/qkK; i++ {
		b := dst[176*i : 176*i+176]
		quantK4Levels(b[:16], src[qkK*i:qkK*i+qkK], &L, 31, -0.5, 15)
		qh, qs := b[16:48], b[48:176]
		clear(qh)
		for c := 0; c < 4; c++ {
			u1, u2 := uint8(1)<<(2*c), uint8(2)<<(2*c)
			q := qs[32*c : 32*c+32]
			for l := 0; l < 32; l++ {
				l1, l2 := L[64*c+l], L[64*c+l+32]
				if l1 > 15 {
					l1 -= 16
					qh[l] |= u1
				}
				if l2 > 15 {
					l2 -= 16
					qh[l] |= u2
				}
				q[l] = l1 | l2<<4
			}
		}
	}
}

// quantQ6_K is quantize_row_q6_K_ref.
func quantQ6_K(dst []byte, src []float32) {
	var (
		L      [qkK]int8
		scales [16]float32
	)
	for i := 0; i < len(src)/qkK; i++ {
		x := src[qkK*i : qkK*i+qkK]
		b := dst[210*i : 210*i+210]
		for ib := 0; ib < 16; ib++ {
			scales[ib] = makeQX(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		}
		maxScale, maxAbsScale := absMax(scales[:])
		if maxAbsScale < groupMaxEps {
			clear(b)
			continue
		}
		iscale := -128 / maxScale
		putF16(b[208:], 1/iscale)
		sc := b[192:208]
		for ib := 0; ib < 16; ib++ {
			sc[ib] = uint8(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		d := f16At(b[208:])
		for j := 0; j < 16; j++ {
			dj := float32(d * float32(int8(sc[j])))
			if dj == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = int8(clampInt(nearestInt(x[16*j+ii]/dj), -32, 31) + 32)
			}
		}
		for h := 0; h < 2; h++ {
			ql, qh := b[64*h:64*h+64], b[128+32*h:128+32*h+32]
			Lh := L[128*h : 128*h+128]
			for l := 0; l < 32; l++ {
				q1 := uint8(Lh[l]) & 0xF
				q2 := uint8(Lh[l+32]) & 0xF
				q3 := uint8(Lh[l+64]) & 0xF
				q4 := uint8(Lh[l+96]) & 0xF
				ql[l] = q1 | q3<<4
				ql[l+32] = q2 | q4<<4
				qh[l] = uint8(Lh[l])>>4 | (uint8(Lh[l+32])>>4)<<2 | (uint8(Lh[l+64])>>4)<<4 | (uint8(Lh[l+96])>>4)<<6
			}
		}
	}
}
