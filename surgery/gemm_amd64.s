//go:build amd64 && !purego

#include "textflag.h"

// PACKARGS loads the arguments of the packTN* functions below: DI = dst,
// R8 = ss in bytes (dst elements of 1<<dshift bytes), SI = src, R9 = lda in
// bytes, CX = kc, R10 = strips, R11 = the prefetch distance in bytes; it
// jumps to done when there is nothing to pack.
#define PACKARGS(dshift, done) \
	MOVQ  dst+0(FP), DI \
	MOVQ  ss+8(FP), R8 \
	SHLQ  $dshift, R8 \
	MOVQ  src+16(FP), SI \
	MOVQ  lda+24(FP), R9 \
	SHLQ  $2, R9 \
	MOVQ  kc+32(FP), CX \
	MOVQ  strips+40(FP), R10 \
	MOVQ  pf+48(FP), R11 \
	IMULQ R9, R11 \
	TESTQ CX, CX \
	JZ    done \
	TESTQ R10, R10 \
	JZ    done

// PACKROW starts a row of A: AX = its first source group, BX = the first
// destination group, DX = the prefetch address, R12 = strips to go.
#define PACKROW \
	MOVQ SI, AX \
	MOVQ DI, BX \
	LEAQ (SI)(R11*1), DX \
	MOVQ R10, R12

// Microkernels: C[mr×nr] += A[mr×kc] · B[kc×nr], A packed as kc groups of mr
// elements, B packed as kc rows of nr elements, C with row stride ldc
// elements. Arguments: kc+0, a+8, b+16, c+24, ldc+32.

// ---- AVX-512, float32, 8×48: Z0..Z23 accumulate row i in Z(3i..3i+2).

#define S512ROW(off, bc, z0, z1, z2) \
	VBROADCASTSS off(SI), bc \
	VFMADD231PS  Z24, bc, z0 \
	VFMADD231PS  Z25, bc, z1 \
	VFMADD231PS  Z26, bc, z2

#define S512STORE(z0, z1, z2) \
	VADDPS  (DX), z0, z0 \
	VMOVUPS z0, (DX) \
	VADDPS  64(DX), z1, z1 \
	VMOVUPS z1, 64(DX) \
	VADDPS  128(DX), z2, z2 \
	VMOVUPS z2, 128(DX) \
	ADDQ    R8, DX

// func kernS8x48AVX512(kc int, a, b, c *float32, ldc int)
TEXT ·kernS8x48AVX512(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	TESTQ CX, CX
	JZ    s512store

s512loop:
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	S512ROW(0, Z27, Z0, Z1, Z2)
	S512ROW(4, Z28, Z3, Z4, Z5)
	S512ROW(8, Z29, Z6, Z7, Z8)
	S512ROW(12, Z30, Z9, Z10, Z11)
	S512ROW(16, Z27, Z12, Z13, Z14)
	S512ROW(20, Z28, Z15, Z16, Z17)
	S512ROW(24, Z29, Z18, Z19, Z20)
	S512ROW(28, Z30, Z21, Z22, Z23)
	ADDQ $32, SI
	ADDQ $192, DI
	DECQ CX
	JNZ  s512loop

s512store:
	S512STORE(Z0, Z1, Z2)
	S512STORE(Z3, Z4, Z5)
	S512STORE(Z6, Z7, Z8)
	S512STORE(Z9, Z10, Z11)
	S512STORE(Z12, Z13, Z14)
	S512STORE(Z15, Z16, Z17)
	S512STORE(Z18, Z19, Z20)
	S512STORE(Z21, Z22, Z23)
	VZEROUPPER
	RET

// ---- AVX-512, float64, 8×24: same shape with 8 doubles per register.

#define D512ROW(off, bc, z0, z1, z2) \
	VBROADCASTSD off(SI), bc \
	VFMADD231PD  Z24, bc, z0 \
	VFMADD231PD  Z25, bc, z1 \
	VFMADD231PD  Z26, bc, z2

#define D512STORE(z0, z1, z2) \
	VADDPD  (DX), z0, z0 \
	VMOVUPD z0, (DX) \
	VADDPD  64(DX), z1, z1 \
	VMOVUPD z1, 64(DX) \
	VADDPD  128(DX), z2, z2 \
	VMOVUPD z2, 128(DX) \
	ADDQ    R8, DX

// func kernD8x24AVX512(kc int, a, b, c *float64, ldc int)
TEXT ·kernD8x24AVX512(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $3, R8
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	VPXORQ Z8, Z8, Z8
	VPXORQ Z9, Z9, Z9
	VPXORQ Z10, Z10, Z10
	VPXORQ Z11, Z11, Z11
	VPXORQ Z12, Z12, Z12
	VPXORQ Z13, Z13, Z13
	VPXORQ Z14, Z14, Z14
	VPXORQ Z15, Z15, Z15
	VPXORQ Z16, Z16, Z16
	VPXORQ Z17, Z17, Z17
	VPXORQ Z18, Z18, Z18
	VPXORQ Z19, Z19, Z19
	VPXORQ Z20, Z20, Z20
	VPXORQ Z21, Z21, Z21
	VPXORQ Z22, Z22, Z22
	VPXORQ Z23, Z23, Z23
	TESTQ CX, CX
	JZ    d512store

d512loop:
	VMOVUPD (DI), Z24
	VMOVUPD 64(DI), Z25
	VMOVUPD 128(DI), Z26
	D512ROW(0, Z27, Z0, Z1, Z2)
	D512ROW(8, Z28, Z3, Z4, Z5)
	D512ROW(16, Z29, Z6, Z7, Z8)
	D512ROW(24, Z30, Z9, Z10, Z11)
	D512ROW(32, Z27, Z12, Z13, Z14)
	D512ROW(40, Z28, Z15, Z16, Z17)
	D512ROW(48, Z29, Z18, Z19, Z20)
	D512ROW(56, Z30, Z21, Z22, Z23)
	ADDQ $64, SI
	ADDQ $192, DI
	DECQ CX
	JNZ  d512loop

d512store:
	D512STORE(Z0, Z1, Z2)
	D512STORE(Z3, Z4, Z5)
	D512STORE(Z6, Z7, Z8)
	D512STORE(Z9, Z10, Z11)
	D512STORE(Z12, Z13, Z14)
	D512STORE(Z15, Z16, Z17)
	D512STORE(Z18, Z19, Z20)
	D512STORE(Z21, Z22, Z23)
	VZEROUPPER
	RET

// ---- AVX2 + FMA, float32, 6×16: Y0..Y11 accumulate row i in Y(2i), Y(2i+1).

#define S256ROW(off, bc, y0, y1) \
	VBROADCASTSS off(SI), bc \
	VFMADD231PS  Y12, bc, y0 \
	VFMADD231PS  Y13, bc, y1

#define S256STORE(y0, y1) \
	VADDPS  (DX), y0, y0 \
	VMOVUPS y0, (DX) \
	VADDPS  32(DX), y1, y1 \
	VMOVUPS y1, 32(DX) \
	ADDQ    R8, DX

// func kernS6x16AVX2(kc int, a, b, c *float32, ldc int)
TEXT ·kernS6x16AVX2(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JZ    s256store

s256loop:
	VMOVUPS (DI), Y12
	VMOVUPS 32(DI), Y13
	S256ROW(0, Y14, Y0, Y1)
	S256ROW(4, Y15, Y2, Y3)
	S256ROW(8, Y14, Y4, Y5)
	S256ROW(12, Y15, Y6, Y7)
	S256ROW(16, Y14, Y8, Y9)
	S256ROW(20, Y15, Y10, Y11)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  s256loop

s256store:
	S256STORE(Y0, Y1)
	S256STORE(Y2, Y3)
	S256STORE(Y4, Y5)
	S256STORE(Y6, Y7)
	S256STORE(Y8, Y9)
	S256STORE(Y10, Y11)
	VZEROUPPER
	RET

// ---- AVX2 + FMA, float64, 6×8.

#define D256ROW(off, bc, y0, y1) \
	VBROADCASTSD off(SI), bc \
	VFMADD231PD  Y12, bc, y0 \
	VFMADD231PD  Y13, bc, y1

#define D256STORE(y0, y1) \
	VADDPD  (DX), y0, y0 \
	VMOVUPD y0, (DX) \
	VADDPD  32(DX), y1, y1 \
	VMOVUPD y1, 32(DX) \
	ADDQ    R8, DX

// func kernD6x8AVX2(kc int, a, b, c *float64, ldc int)
TEXT ·kernD6x8AVX2(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $3, R8
	// Ask for the tile's six rows of C now: they are added in at the end,
	// and would otherwise be waited for then.
	PREFETCHT0 (DX)
	PREFETCHT0 (DX)(R8*1)
	PREFETCHT0 (DX)(R8*2)
	LEAQ       (DX)(R8*2), R9
	PREFETCHT0 (R9)(R8*1)
	PREFETCHT0 (R9)(R8*2)
	LEAQ       (R9)(R8*2), R9
	PREFETCHT0 (R9)(R8*1)
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	TESTQ CX, CX
	JZ    d256store

d256loop:
	VMOVUPD (DI), Y12
	VMOVUPD 32(DI), Y13
	D256ROW(0, Y14, Y0, Y1)
	D256ROW(8, Y15, Y2, Y3)
	D256ROW(16, Y14, Y4, Y5)
	D256ROW(24, Y15, Y6, Y7)
	D256ROW(32, Y14, Y8, Y9)
	D256ROW(40, Y15, Y10, Y11)
	ADDQ $48, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  d256loop

d256store:
	D256STORE(Y0, Y1)
	D256STORE(Y2, Y3)
	D256STORE(Y4, Y5)
	D256STORE(Y6, Y7)
	D256STORE(Y8, Y9)
	D256STORE(Y10, Y11)
	VZEROUPPER
	RET

// func packTN8f32(dst *float32, ss int, src *float32, lda, kc, strips, pf int)
// For kk in [0, kc): copies the 8-float groups src[kk·lda + 8s .. +8] to
// dst[s·ss + 8kk .. +8] for s in [0, strips), prefetching the same segment
// pf rows ahead. ss and lda are in elements.
TEXT ·packTN8f32(SB), NOSPLIT, $0-56
	PACKARGS(2, ptdone)

ptrow:
	PACKROW

ptgroup:
	PREFETCHT0 (DX)
	VMOVUPS (AX), Y0
	VMOVUPS Y0, (BX)
	ADDQ $32, AX
	ADDQ $32, DX
	ADDQ R8, BX
	DECQ R12
	JNZ  ptgroup

	ADDQ R9, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  ptrow

ptdone:
	VZEROUPPER
	RET

// func packTN6f32(dst *float32, ss int, src *float32, lda, kc, strips, pf int)
// packTN8f32 for 6-float groups (the AVX2 kernel's strips), moved as 16 +
// 8 bytes.
TEXT ·packTN6f32(SB), NOSPLIT, $0-56
	PACKARGS(2, pt6done)

pt6row:
	PACKROW

pt6group:
	PREFETCHT0 (DX)
	VMOVUPS (AX), X0
	VMOVSD  16(AX), X1
	VMOVUPS X0, (BX)
	VMOVSD  X1, 16(BX)
	ADDQ $24, AX
	ADDQ $24, DX
	ADDQ R8, BX
	DECQ R12
	JNZ  pt6group

	ADDQ R9, SI
	ADDQ $24, DI
	DECQ CX
	JNZ  pt6row

pt6done:
	VZEROUPPER
	RET

// func packTN6f32f64(dst *float64, ss int, src *float32, lda, kc, strips, pf int)
// packTN6f32 widening to float64 (exactly) on the way: the AVX2 float64
// kernel's strips of a transposed float32 A. ss is in float64 elements.
TEXT ·packTN6f32f64(SB), NOSPLIT, $0-56
	PACKARGS(3, pw6done)

pw6row:
	PACKROW

pw6group:
	PREFETCHT0 (DX)
	VCVTPS2PD (AX), Y0     // floats 0..3
	VCVTPS2PD 16(AX), X1   // floats 4..5
	VMOVUPD Y0, (BX)
	VMOVUPD X1, 32(BX)
	ADDQ $24, AX
	ADDQ $24, DX
	ADDQ R8, BX
	DECQ R12
	JNZ  pw6group

	ADDQ R9, SI
	ADDQ $48, DI
	DECQ CX
	JNZ  pw6row

pw6done:
	VZEROUPPER
	RET

// ---- Direct variant of the AVX-512 float32 kernel: A is read where it
// lies instead of from a packed strip. (A direct variant for a transposed A
// was slower than packing it: its strips are 32-byte pieces of rows 16 KiB
// apart.)
//
// kernS8x48AVX512N: op(A) = A, row i of the strip at a + i·lda, element kk
// at +4kk (lda in elements).
// func kernS8x48AVX512N(kc int, a *float32, lda int, b, c *float32, ldc int)
//
// The 8 rows of A stream from memory; the main loop does 8 steps at a
// time and prefetches each row PFDIST bytes ahead once per 8 steps.
#define SNROW(addr, bc, z0, z1, z2) \
	VBROADCASTSS addr, bc \
	VFMADD231PS  Z24, bc, z0 \
	VFMADD231PS  Z25, bc, z1 \
	VFMADD231PS  Z26, bc, z2

#define PFDIST 512

TEXT ·kernS8x48AVX512N(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	LEAQ (R9)(R9*2), R10   // 3·lda
	LEAQ (SI)(R9*4), R11   // row 4
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	MOVQ CX, BX
	SHRQ $3, BX            // groups of 8 steps
	ANDQ $7, CX            // remaining steps
	TESTQ BX, BX
	JZ    snrest

sn8loop:
	PREFETCHT0 PFDIST(SI)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(SI)(R9*1)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(SI)(R9*2)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(SI)(R10*1)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(R11)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(R11)(R9*1)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(R11)(R9*2)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	PREFETCHT0 PFDIST(R11)(R10*1)
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	DECQ BX
	JNZ  sn8loop

snrest:
	TESTQ CX, CX
	JZ    snstore

snloop:
	VMOVUPS (DI), Z24
	VMOVUPS 64(DI), Z25
	VMOVUPS 128(DI), Z26
	SNROW((SI), Z27, Z0, Z1, Z2)
	SNROW((SI)(R9*1), Z28, Z3, Z4, Z5)
	SNROW((SI)(R9*2), Z29, Z6, Z7, Z8)
	SNROW((SI)(R10*1), Z30, Z9, Z10, Z11)
	SNROW((R11), Z27, Z12, Z13, Z14)
	SNROW((R11)(R9*1), Z28, Z15, Z16, Z17)
	SNROW((R11)(R9*2), Z29, Z18, Z19, Z20)
	SNROW((R11)(R10*1), Z30, Z21, Z22, Z23)
	ADDQ $4, SI
	ADDQ $4, R11
	ADDQ $192, DI
	DECQ CX
	JNZ  snloop

snstore:
	S512STORE(Z0, Z1, Z2)
	S512STORE(Z3, Z4, Z5)
	S512STORE(Z6, Z7, Z8)
	S512STORE(Z9, Z10, Z11)
	S512STORE(Z12, Z13, Z14)
	S512STORE(Z15, Z16, Z17)
	S512STORE(Z18, Z19, Z20)
	S512STORE(Z21, Z22, Z23)
	VZEROUPPER
	RET

// ---- AVX2 + FMA (+ F16C), float64 6×8 on 16-bit storage: binary16 and
// bfloat16 tiles are widened, added to the product and rounded back once,
// in registers.

DATA k16keep<>+0(SB)/8, $0xffffffffe0000000
DATA k16keep<>+8(SB)/8, $0xffffffffe0000000
DATA k16keep<>+16(SB)/8, $0xffffffffe0000000
DATA k16keep<>+24(SB)/8, $0xffffffffe0000000
GLOBL k16keep<>(SB), RODATA|NOPTR, $32
DATA k16low<>+0(SB)/8, $0x1fffffff
DATA k16low<>+8(SB)/8, $0x1fffffff
DATA k16low<>+16(SB)/8, $0x1fffffff
DATA k16low<>+24(SB)/8, $0x1fffffff
GLOBL k16low<>(SB), RODATA|NOPTR, $32
DATA k16odd<>+0(SB)/8, $0x20000000
DATA k16odd<>+8(SB)/8, $0x20000000
DATA k16odd<>+16(SB)/8, $0x20000000
DATA k16odd<>+24(SB)/8, $0x20000000
GLOBL k16odd<>(SB), RODATA|NOPTR, $32
DATA k16abs<>+0(SB)/8, $0x7fffffffffffffff
DATA k16abs<>+8(SB)/8, $0x7fffffffffffffff
DATA k16abs<>+16(SB)/8, $0x7fffffffffffffff
DATA k16abs<>+24(SB)/8, $0x7fffffffffffffff
GLOBL k16abs<>(SB), RODATA|NOPTR, $32
DATA k16min<>+0(SB)/8, $0x3810000000000000
DATA k16min<>+8(SB)/8, $0x3810000000000000
DATA k16min<>+16(SB)/8, $0x3810000000000000
DATA k16min<>+24(SB)/8, $0x3810000000000000
GLOBL k16min<>(SB), RODATA|NOPTR, $32
DATA k16one<>+0(SB)/8, $0x0000000100000001
DATA k16one<>+8(SB)/8, $0x0000000100000001
GLOBL k16one<>(SB), RODATA|NOPTR, $16
DATA k16rnd<>+0(SB)/8, $0x00007fff00007fff
DATA k16rnd<>+8(SB)/8, $0x00007fff00007fff
GLOBL k16rnd<>(SB), RODATA|NOPTR, $16

// K16ADD adds the eight float32 in Y12 (a row of the stored tile, exactly
// widened as the unfused path decodes it) to y0, y1 and moves DX to the
// next row. Clobbers Y12, Y13.
#define K16ADD(y0, y1) \
	VCVTPS2PD    X12, Y13 \
	VADDPD       Y13, y0, y0 \
	VEXTRACTF128 $1, Y12, X12 \
	VCVTPS2PD    X12, Y12 \
	VADDPD       Y12, y1, y1 \
	ADDQ         R8, DX

// H16ADD adds the row of eight binary16 at (DX) to y0, y1.
#define H16ADD(y0, y1) \
	VCVTPH2PS (DX), Y12 \
	K16ADD(y0, y1)

// B16ADD adds the row of eight bfloat16 at (DX) to y0, y1.
#define B16ADD(y0, y1) \
	VPMOVZXWD (DX), Y12 \
	VPSLLD    $16, Y12, Y12 \
	K16ADD(y0, y1)

// H16BAD ors into Y14 a mask of y's lanes the binary16 rounding below does
// not take: NaNs. Clobbers Y13.
#define H16BAD(y) \
	VCMPPD $3, y, y, Y13 \
	VORPD  Y13, Y14, Y14

// B16BAD ors into Y14 a mask of y's lanes the bfloat16 rounding below does
// not take: NaNs, and magnitudes below 2^-126, zero included (below
// float32's normals the conversion to float32 is not exact). Clobbers Y13.
#define B16BAD(y) \
	VANDPD k16abs<>(SB), y, Y13 \
	VCMPPD $9, k16min<>(SB), Y13, Y13 \
	VORPD  Y13, Y14, Y14

// K16ODD rounds the four float64 in y to 24 bits to odd and converts them
// to float32 in x (the encoders' method: see formats/dtype/simd_amd64.s).
// Y15: zero. Clobbers Y12, Y13.
#define K16ODD(y, x) \
	VPAND      k16low<>(SB), y, Y12 \
	VPCMPEQQ   Y15, Y12, Y12 \
	VPANDN     k16odd<>(SB), Y12, Y12 \
	VPAND      k16keep<>(SB), y, Y13 \
	VPOR       Y12, Y13, Y13 \
	VCVTPD2PSY Y13, x

// H16STORE rounds y0, y1 to binary16, to nearest even, stores them at
// (DI) and moves DI to the next row.
#define H16STORE(y0, y1, x0, x1) \
	K16ODD(y0, x0) \
	K16ODD(y1, x1) \
	VINSERTF128 $1, x1, y0, y0 \
	VCVTPS2PH   $0, y0, x0 \
	VMOVDQU     x0, (DI) \
	ADDQ        R9, DI

// RNE16 rounds the four float32 bit patterns in x to their upper 16 bits,
// to nearest even: (u + 0x7fff + (u>>16 & 1)) >> 16. Clobbers X12.
#define RNE16(x) \
	VPSRLD $16, x, X12 \
	VPAND  k16one<>(SB), X12, X12 \
	VPADDD k16rnd<>(SB), X12, X12 \
	VPADDD X12, x, x \
	VPSRLD $16, x, x

// B16STORE rounds y0, y1 to bfloat16, to nearest even, stores them at
// (DI) and moves DI to the next row.
#define B16STORE(y0, y1, x0, x1) \
	K16ODD(y0, x0) \
	K16ODD(y1, x1) \
	RNE16(x0) \
	RNE16(x1) \
	VPACKUSDW x1, x0, x0 \
	VMOVDQU   x0, (DI) \
	ADDQ      R9, DI

// STRIPS16 is the body of the kernels below, for a format's ADD, BAD and
// STORE macros.
#define STRIPS16(ADD, BAD, STORE) \
	MOVQ kc+0(FP), R11 \
	MOVQ a+8(FP), R13 \
	MOVQ strips+24(FP), R12 \
	MOVQ src+40(FP), DX \
	MOVQ lds+48(FP), R8 \
	SHLQ $1, R8 \
	MOVQ dst+56(FP), DI \
	MOVQ ldd+64(FP), R9 \
	SHLQ $1, R9 \
	XORQ AX, AX \
strip: \
	CMPQ AX, R12 \
	JEQ  done \
	MOVQ R13, SI \
	MOVQ b+32(FP), BX \
	MOVQ R11, CX \
	PREFETCHT0 (DX) \
	PREFETCHT0 (DX)(R8*1) \
	PREFETCHT0 (DX)(R8*2) \
	LEAQ       (DX)(R8*2), R10 \
	PREFETCHT0 (R10)(R8*1) \
	PREFETCHT0 (R10)(R8*2) \
	LEAQ       (R10)(R8*2), R10 \
	PREFETCHT0 (R10)(R8*1) \
	VXORPD Y0, Y0, Y0 \
	VXORPD Y1, Y1, Y1 \
	VXORPD Y2, Y2, Y2 \
	VXORPD Y3, Y3, Y3 \
	VXORPD Y4, Y4, Y4 \
	VXORPD Y5, Y5, Y5 \
	VXORPD Y6, Y6, Y6 \
	VXORPD Y7, Y7, Y7 \
	VXORPD Y8, Y8, Y8 \
	VXORPD Y9, Y9, Y9 \
	VXORPD Y10, Y10, Y10 \
	VXORPD Y11, Y11, Y11 \
	TESTQ CX, CX \
	JZ    sum \
loop: \
	PREFETCHT0 384(SI) \
	VMOVUPD (BX), Y12 \
	VMOVUPD 32(BX), Y13 \
	D256ROW(0, Y14, Y0, Y1) \
	D256ROW(8, Y15, Y2, Y3) \
	D256ROW(16, Y14, Y4, Y5) \
	D256ROW(24, Y15, Y6, Y7) \
	D256ROW(32, Y14, Y8, Y9) \
	D256ROW(40, Y15, Y10, Y11) \
	ADDQ $48, SI \
	ADDQ $64, BX \
	DECQ CX \
	JNZ  loop \
sum: \
	ADD(Y0, Y1) \
	ADD(Y2, Y3) \
	ADD(Y4, Y5) \
	ADD(Y6, Y7) \
	ADD(Y8, Y9) \
	ADD(Y10, Y11) \
	VXORPD Y14, Y14, Y14 \
	BAD(Y0) \
	BAD(Y1) \
	BAD(Y2) \
	BAD(Y3) \
	BAD(Y4) \
	BAD(Y5) \
	BAD(Y6) \
	BAD(Y7) \
	BAD(Y8) \
	BAD(Y9) \
	BAD(Y10) \
	BAD(Y11) \
	VPTEST Y14, Y14 \
	JNZ    done \
	VPXOR  Y15, Y15, Y15 \
	STORE(Y0, Y1, X0, X1) \
	STORE(Y2, Y3, X2, X3) \
	STORE(Y4, Y5, X4, X5) \
	STORE(Y6, Y7, X6, X7) \
	STORE(Y8, Y9, X8, X9) \
	STORE(Y10, Y11, X10, X11) \
	ADDQ as+16(FP), R13 \
	INCQ AX \
	JMP  strip \
done: \
	VZEROUPPER \
	MOVQ AX, ret+72(FP) \
	RET

// func kernD6x8H16AVX2(kc int, a *float64, as, strips int, b *float64, src *byte, lds int, dst *byte, ldd int) int
// For each of strips strips of A (the first at a, the next as bytes on),
// computes the 6×8 tile of A·B as kernD6x8AVX2 does, adds the binary16
// tile at src (row stride lds elements; the next strip's tile starts six
// rows down) and stores the sums, rounded once, at dst (row stride ldd).
// It stops before storing a tile with a NaN sum (the scalar encoder keeps
// NaN payloads) and returns the number of strips done. Needs F16C.
TEXT ·kernD6x8H16AVX2(SB), NOSPLIT, $0-80
	STRIPS16(H16ADD, H16BAD, H16STORE)

// func kernD6x8B16AVX2(kc int, a *float64, as, strips int, b *float64, src *byte, lds int, dst *byte, ldd int) int
// kernD6x8H16AVX2 for bfloat16, stopping also before a tile with a sum
// below 2^-126 in magnitude (zero included), which the scalar code rounds.
TEXT ·kernD6x8B16AVX2(SB), NOSPLIT, $0-80
	STRIPS16(B16ADD, B16BAD, B16STORE)
