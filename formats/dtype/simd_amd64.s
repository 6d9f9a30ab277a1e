//go:build amd64 && !purego

#include "textflag.h"

// Vector codecs for AVX2 + F16C. Each converts groups of 8 elements and
// stops before the first group holding a value it leaves to the scalar code
// (NaN; for the decoders also ±Inf), returning how many elements it did, a
// multiple of 8.
//
// float64 → binary16/bfloat16 with one rounding: the float64 is first
// rounded to float32 *to odd* (truncate, then set the last bit when
// inexact), then the float32 is rounded to nearest even. Rounding to odd
// with at least two bits more than the final format never changes the final
// result of round-to-nearest (Boldo and Melquiond, "Emulation of FMA and
// correctly rounded sums: proved algorithms using rounding to odd", 2008).
// Truncation is obtained from the default rounding: convert to nearest,
// convert back, and step the float32's bits one toward zero when the
// conversion went away from zero.

DATA absmask<>+0(SB)/8, $0x7fffffffffffffff
GLOBL absmask<>(SB), RODATA|NOPTR, $8
DATA one32<>+0(SB)/4, $1
GLOBL one32<>(SB), RODATA|NOPTR, $4
DATA f16exp<>+0(SB)/2, $0x7c00
GLOBL f16exp<>(SB), RODATA|NOPTR, $2
DATA bf16exp<>+0(SB)/2, $0x7f80
GLOBL bf16exp<>(SB), RODATA|NOPTR, $2
DATA bf16round<>+0(SB)/4, $0x7fff
GLOBL bf16round<>(SB), RODATA|NOPTR, $4

// ODD4 rounds the four float64 in y to float32 to odd, leaving them in x.
// Y15: |·| mask, X14: int32 ones. Clobbers Y8–Y11. Y10 marks the lanes
// whose conversion went away from zero (|back| > |y|), Y8 the inexact ones
// (back ≠ y); both masks are narrowed to 32-bit lanes, the first is added
// (−1: one step toward zero), the second or-ed in as the last bit.
#define ODD4(y, x) \
	VCVTPD2PSY   y, x \
	VCVTPS2PD    x, Y8 \
	VANDPD       Y15, y, Y9 \
	VANDPD       Y15, Y8, Y10 \
	VCMPPD       $0x1e, Y9, Y10, Y10 \
	VCMPPD       $4, y, Y8, Y8 \
	VEXTRACTF128 $1, Y10, X11 \
	VSHUFPS      $0x88, X11, X10, X10 \
	VEXTRACTF128 $1, Y8, X11 \
	VSHUFPS      $0x88, X11, X8, X8 \
	VPADDD       X10, x, x \
	VPAND        X14, X8, X8 \
	VPOR         X8, x, x

// NAN8 jumps to stop when any of the eight float64 in Y0, Y1 is NaN.
#define NAN8(stop) \
	VCMPPD    $3, Y0, Y0, Y2 \
	VCMPPD    $3, Y1, Y1, Y3 \
	VORPD     Y2, Y3, Y2 \
	VMOVMSKPD Y2, DX \
	TESTL     DX, DX \
	JNZ       stop

// ARGS loads the arguments of every codec here: DI = dst, SI = src,
// CX = the number of whole groups of 8, AX = elements done (0).
#define ARGS \
	MOVQ dst+0(FP), DI \
	MOVQ src+8(FP), SI \
	MOVQ n+16(FP), CX \
	SHRQ $3, CX \
	XORQ AX, AX

// NEXT8 moves on by one group of 8: src by sin bytes, dst by dout.
#define NEXT8(sin, dout, loop) \
	ADDQ $sin, SI \
	ADDQ $dout, DI \
	ADDQ $8, AX \
	DECQ CX \
	JMP  loop

// DONE returns the elements done.
#define DONE \
	VZEROUPPER \
	MOVQ AX, ret+24(FP) \
	RET

// func encF16(dst *byte, src *float64, n int) int
TEXT ·encF16(SB), NOSPLIT, $0-32
	ARGS
	VBROADCASTSD absmask<>(SB), Y15
	VPBROADCASTD one32<>(SB), X14

ef16loop:
	TESTQ       CX, CX
	JZ          ef16done
	VMOVUPD     (SI), Y0
	VMOVUPD     32(SI), Y1
	NAN8(ef16done)
	ODD4(Y0, X4)
	ODD4(Y1, X5)
	VINSERTF128 $1, X5, Y4, Y4
	VCVTPS2PH   $0, Y4, X6
	VMOVDQU     X6, (DI)
	NEXT8(64, 16, ef16loop)

ef16done:
	DONE

// RNE16 rounds the four float32 bit patterns in x to their upper 16 bits,
// to nearest even: (u + 0x7fff + (u>>16 & 1)) >> 16. X13: 0x7fff, X14:
// ones. Clobbers X6.
#define RNE16(x) \
	VPSRLD $16, x, X6 \
	VPAND  X14, X6, X6 \
	VPADDD X13, X6, X6 \
	VPADDD X6, x, x \
	VPSRLD $16, x, x

// func encBF16(dst *byte, src *float64, n int) int
TEXT ·encBF16(SB), NOSPLIT, $0-32
	ARGS
	VBROADCASTSD absmask<>(SB), Y15
	VPBROADCASTD one32<>(SB), X14
	VPBROADCASTD bf16round<>(SB), X13

ebf16loop:
	TESTQ     CX, CX
	JZ        ebf16done
	VMOVUPD   (SI), Y0
	VMOVUPD   32(SI), Y1
	NAN8(ebf16done)
	ODD4(Y0, X4)
	ODD4(Y1, X5)
	RNE16(X4)
	RNE16(X5)
	VPACKUSDW X5, X4, X6
	VMOVDQU   X6, (DI)
	NEXT8(64, 16, ebf16loop)

ebf16done:
	DONE

// SPECIAL8 jumps to stop when any of the eight 16-bit values at (SI) has
// all exponent bits set (Inf or NaN) under the mask in X13.
#define SPECIAL8(stop) \
	VMOVDQU   (SI), X0 \
	VPAND     X13, X0, X0 \
	VPCMPEQW  X13, X0, X0 \
	VPMOVMSKB X0, DX \
	TESTL     DX, DX \
	JNZ       stop

// func decF16(dst *float64, src *byte, n int) int
TEXT ·decF16(SB), NOSPLIT, $0-32
	ARGS
	VPBROADCASTW f16exp<>(SB), X13

df16loop:
	TESTQ        CX, CX
	JZ           df16done
	SPECIAL8(df16done)
	VCVTPH2PS    (SI), Y0
	VCVTPS2PD    X0, Y1
	VEXTRACTF128 $1, Y0, X2
	VCVTPS2PD    X2, Y3
	VMOVUPD      Y1, (DI)
	VMOVUPD      Y3, 32(DI)
	NEXT8(16, 64, df16loop)

df16done:
	DONE

// func decF16F32(dst *float32, src *byte, n int) int
TEXT ·decF16F32(SB), NOSPLIT, $0-32
	ARGS
	VPBROADCASTW f16exp<>(SB), X13

dff32loop:
	TESTQ     CX, CX
	JZ        dff32done
	SPECIAL8(dff32done)
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	NEXT8(16, 32, dff32loop)

dff32done:
	DONE

// func decBF16(dst *float64, src *byte, n int) int
TEXT ·decBF16(SB), NOSPLIT, $0-32
	ARGS
	VPBROADCASTW bf16exp<>(SB), X13

dbf16loop:
	TESTQ        CX, CX
	JZ           dbf16done
	SPECIAL8(dbf16done)
	VPMOVZXWD    (SI), Y0
	VPSLLD       $16, Y0, Y0
	VCVTPS2PD    X0, Y1
	VEXTRACTF128 $1, Y0, X2
	VCVTPS2PD    X2, Y3
	VMOVUPD      Y1, (DI)
	VMOVUPD      Y3, 32(DI)
	NEXT8(16, 64, dbf16loop)

dbf16done:
	DONE
