//go:build amd64 && !purego

#include "textflag.h"

// Vector codecs for AVX2 + F16C. Each converts groups of 8 elements and
// returns how many elements it did, a multiple of 8. The decoders convert
// every 16-bit code exactly as the scalar code does, NaNs and infinities
// included (TestDecodeEveryCode); the encoders stop before the first group
// holding a NaN, which the scalar code handles (it keeps NaN payloads).
//
// float64 → binary16/bfloat16 with one rounding: the float64 is first
// rounded to 24 significant bits *to odd* (truncate, then set the last kept
// bit when anything nonzero was cut off), then the float32 is rounded to
// nearest even. Rounding to odd with at least two bits more than the final
// format never changes the final result of round-to-nearest (Boldo and
// Melquiond, "Emulation of FMA and correctly rounded sums: proved
// algorithms using rounding to odd", 2008). The truncation works on the
// float64's bits (mask off the low 29 of its 52 fraction bits), so the
// conversion to float32 that follows is exact wherever float32 has 24
// bits, that is above its subnormals. Below them (|x| < 2^-126) binary16
// rounds to zero whatever the float32 is; bfloat16, which shares float32's
// exponent range, leaves such groups to the scalar code.

DATA absmask<>+0(SB)/8, $0x7fffffffffffffff
GLOBL absmask<>(SB), RODATA|NOPTR, $8
DATA one32<>+0(SB)/4, $1
GLOBL one32<>(SB), RODATA|NOPTR, $4
DATA bf16round<>+0(SB)/4, $0x7fff
GLOBL bf16round<>(SB), RODATA|NOPTR, $4

DATA low29<>+0(SB)/8, $0x1fffffff
GLOBL low29<>(SB), RODATA|NOPTR, $8
DATA bit29<>+0(SB)/8, $0x20000000
GLOBL bit29<>(SB), RODATA|NOPTR, $8
DATA minnorm32<>+0(SB)/8, $0x3810000000000000
GLOBL minnorm32<>(SB), RODATA|NOPTR, $8

// ODDCONST loads ODD4's constants.
#define ODDCONST \
	VPBROADCASTQ low29<>(SB), Y12 \
	VPBROADCASTQ bit29<>(SB), Y11 \
	VPXOR        Y10, Y10, Y10

// ODD4 rounds the four float64 in y to 24 bits to odd and converts them
// to float32 (exactly, for |y| ≥ 2^-126), leaving them in x. Y12: the low
// 29 bits, Y11: bit 29, Y10: zero. Clobbers Y8, Y9.
#define ODD4(y, x) \
	VPAND      Y12, y, Y8 \
	VPCMPEQQ   Y10, Y8, Y8 \
	VPANDN     Y11, Y8, Y8 \
	VPANDN     y, Y12, Y9 \
	VPOR       Y8, Y9, Y9 \
	VCVTPD2PSY Y9, x

// NAN8 jumps to stop when any of the eight float64 in Y0, Y1 is NaN.
#define NAN8(stop) \
	VCMPPD    $3, Y0, Y0, Y2 \
	VCMPPD    $3, Y1, Y1, Y3 \
	VORPD     Y2, Y3, Y2 \
	VMOVMSKPD Y2, DX \
	TESTL     DX, DX \
	JNZ       stop

// TINY8 jumps to stop when any of the eight float64 in Y0, Y1 is nonzero
// with |x| < 2^-126. Y15: |·| mask, Y10: zero, Y7: 2^-126's bits.
// Clobbers Y2–Y5.
#define TINY8(stop) \
	VANDPD    Y15, Y0, Y2 \
	VANDPD    Y15, Y1, Y3 \
	VPCMPGTQ  Y2, Y7, Y4 \
	VPCMPGTQ  Y3, Y7, Y5 \
	VPCMPEQQ  Y10, Y2, Y2 \
	VPCMPEQQ  Y10, Y3, Y3 \
	VPANDN    Y4, Y2, Y4 \
	VPANDN    Y5, Y3, Y5 \
	VPOR      Y4, Y5, Y4 \
	VPTEST    Y4, Y4 \
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
	ODDCONST

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
	ODDCONST
	VBROADCASTSD absmask<>(SB), Y15
	VPBROADCASTD one32<>(SB), X14
	VPBROADCASTD bf16round<>(SB), X13
	VPBROADCASTQ minnorm32<>(SB), Y7

ebf16loop:
	TESTQ     CX, CX
	JZ        ebf16done
	VMOVUPD   (SI), Y0
	VMOVUPD   32(SI), Y1
	NAN8(ebf16done)
	TINY8(ebf16done)
	ODD4(Y0, X4)
	ODD4(Y1, X5)
	RNE16(X4)
	RNE16(X5)
	VPACKUSDW X5, X4, X6
	VMOVDQU   X6, (DI)
	NEXT8(64, 16, ebf16loop)

ebf16done:
	DONE

// STORE8F64 widens the eight float32 in Y0 to float64 and stores them at
// (DI). Clobbers Y1–Y3.
#define STORE8F64 \
	VCVTPS2PD    X0, Y1 \
	VEXTRACTF128 $1, Y0, X2 \
	VCVTPS2PD    X2, Y3 \
	VMOVUPD      Y1, (DI) \
	VMOVUPD      Y3, 32(DI)

// func decF16(dst *float64, src *byte, n int) int
TEXT ·decF16(SB), NOSPLIT, $0-32
	ARGS

df16loop:
	TESTQ        CX, CX
	JZ           df16done
	VCVTPH2PS    (SI), Y0
	STORE8F64
	NEXT8(16, 64, df16loop)

df16done:
	DONE

// func decF16F32(dst *float32, src *byte, n int) int
TEXT ·decF16F32(SB), NOSPLIT, $0-32
	ARGS

dff32loop:
	TESTQ     CX, CX
	JZ        dff32done
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	NEXT8(16, 32, dff32loop)

dff32done:
	DONE

// func decBF16(dst *float64, src *byte, n int) int
TEXT ·decBF16(SB), NOSPLIT, $0-32
	ARGS

dbf16loop:
	TESTQ        CX, CX
	JZ           dbf16done
	VPMOVZXWD    (SI), Y0
	VPSLLD       $16, Y0, Y0
	STORE8F64
	NEXT8(16, 64, dbf16loop)

dbf16done:
	DONE
