//go:build amd64 && !purego

#include "textflag.h"

// The vector kernels of engine/cpu (see vmath.go). They work on four float64 lanes (AVX2),
// converting float32 data on load and rounding to float32 once on store, and each process
// the first len rounded down to a multiple of 4 elements: the Go caller finishes the tail.
// Except for the exponential (fused multiply-adds, see ExpF64x4), every kernel performs the
// same IEEE operations in the same order as its scalar Go counterpart, so their results
// are bit-identical to it.

// Constants of fexp (engine/cpu/fastexp.go), each repeated in the 4 lanes of a YMM register.
DATA fexpc<>+0(SB)/8, $0x3FE0000000000000
DATA fexpc<>+8(SB)/8, $0x3FE0000000000000
DATA fexpc<>+16(SB)/8, $0x3FE0000000000000
DATA fexpc<>+24(SB)/8, $0x3FE0000000000000
DATA fexpc<>+32(SB)/8, $0x3FC5555555555555
DATA fexpc<>+40(SB)/8, $0x3FC5555555555555
DATA fexpc<>+48(SB)/8, $0x3FC5555555555555
DATA fexpc<>+56(SB)/8, $0x3FC5555555555555
DATA fexpc<>+64(SB)/8, $0x3FA5555555555555
DATA fexpc<>+72(SB)/8, $0x3FA5555555555555
DATA fexpc<>+80(SB)/8, $0x3FA5555555555555
DATA fexpc<>+88(SB)/8, $0x3FA5555555555555
DATA fexpc<>+96(SB)/8, $0x3F81111111111111
DATA fexpc<>+104(SB)/8, $0x3F81111111111111
DATA fexpc<>+112(SB)/8, $0x3F81111111111111
DATA fexpc<>+120(SB)/8, $0x3F81111111111111
DATA fexpc<>+128(SB)/8, $0x3F56C16C16C16C17
DATA fexpc<>+136(SB)/8, $0x3F56C16C16C16C17
DATA fexpc<>+144(SB)/8, $0x3F56C16C16C16C17
DATA fexpc<>+152(SB)/8, $0x3F56C16C16C16C17
DATA fexpc<>+160(SB)/8, $0x3F2A01A01A01A01A
DATA fexpc<>+168(SB)/8, $0x3F2A01A01A01A01A
DATA fexpc<>+176(SB)/8, $0x3F2A01A01A01A01A
DATA fexpc<>+184(SB)/8, $0x3F2A01A01A01A01A
DATA fexpc<>+192(SB)/8, $0x3FF71547652B82FE
DATA fexpc<>+200(SB)/8, $0x3FF71547652B82FE
DATA fexpc<>+208(SB)/8, $0x3FF71547652B82FE
DATA fexpc<>+216(SB)/8, $0x3FF71547652B82FE
DATA fexpc<>+224(SB)/8, $0x4338000000000000
DATA fexpc<>+232(SB)/8, $0x4338000000000000
DATA fexpc<>+240(SB)/8, $0x4338000000000000
DATA fexpc<>+248(SB)/8, $0x4338000000000000
DATA fexpc<>+256(SB)/8, $0x3FE62E42FEE00000
DATA fexpc<>+264(SB)/8, $0x3FE62E42FEE00000
DATA fexpc<>+272(SB)/8, $0x3FE62E42FEE00000
DATA fexpc<>+280(SB)/8, $0x3FE62E42FEE00000
DATA fexpc<>+288(SB)/8, $0x3DEA39EF35793C76
DATA fexpc<>+296(SB)/8, $0x3DEA39EF35793C76
DATA fexpc<>+304(SB)/8, $0x3DEA39EF35793C76
DATA fexpc<>+312(SB)/8, $0x3DEA39EF35793C76
DATA fexpc<>+320(SB)/8, $0xC086200000000000
DATA fexpc<>+328(SB)/8, $0xC086200000000000
DATA fexpc<>+336(SB)/8, $0xC086200000000000
DATA fexpc<>+344(SB)/8, $0xC086200000000000
DATA fexpc<>+352(SB)/8, $0x4086280000000000
DATA fexpc<>+360(SB)/8, $0x4086280000000000
DATA fexpc<>+368(SB)/8, $0x4086280000000000
DATA fexpc<>+376(SB)/8, $0x4086280000000000
DATA fexpc<>+384(SB)/8, $0x3FF0000000000000
DATA fexpc<>+392(SB)/8, $0x3FF0000000000000
DATA fexpc<>+400(SB)/8, $0x3FF0000000000000
DATA fexpc<>+408(SB)/8, $0x3FF0000000000000
DATA fexpc<>+416(SB)/8, $0x00000000000003FF
DATA fexpc<>+424(SB)/8, $0x00000000000003FF
DATA fexpc<>+432(SB)/8, $0x00000000000003FF
DATA fexpc<>+440(SB)/8, $0x00000000000003FF
GLOBL fexpc<>(SB), RODATA|NOPTR, $448

// RANGECHK jumps to fail unless every lane of Y0 is in (−708, 709) (ordered compares:
// NaN fails). Clobbers Y1, Y2, BX.
#define RANGECHK(fail) \
	VCMPPD    $0x1e, fexpc<>+320(SB), Y0, Y1 \
	VCMPPD    $0x11, fexpc<>+352(SB), Y0, Y2 \
	VANDPD    Y1, Y2, Y1 \
	VMOVMSKPD Y1, BX \
	CMPQ      BX, $15 \
	JNE       fail

// EXPY0Y5 sets Y5 = e^Y0 by fexp's method: t = y·log2e + 1.5·2^52 (its low mantissa
// bits hold k = round(y·log2e)), r = y − k·ln2Hi − k·ln2Lo, the degree-7 Taylor
// polynomial of e^r by Horner, times 2^k = (k + 1023) << 52 from the bits of t.
// Clobbers Y0, Y3, Y4.
#define EXPY0Y5 \
	VMOVAPD      fexpc<>+224(SB), Y3 \
	VFMADD231PD  fexpc<>+192(SB), Y0, Y3 \
	VSUBPD       fexpc<>+224(SB), Y3, Y4 \
	VFNMADD231PD fexpc<>+256(SB), Y4, Y0 \
	VFNMADD231PD fexpc<>+288(SB), Y4, Y0 \
	VMOVAPD      fexpc<>+160(SB), Y5 \
	VFMADD213PD  fexpc<>+128(SB), Y0, Y5 \
	VFMADD213PD  fexpc<>+96(SB), Y0, Y5 \
	VFMADD213PD  fexpc<>+64(SB), Y0, Y5 \
	VFMADD213PD  fexpc<>+32(SB), Y0, Y5 \
	VFMADD213PD  fexpc<>+0(SB), Y0, Y5 \
	VFMADD213PD  fexpc<>+384(SB), Y0, Y5 \
	VFMADD213PD  fexpc<>+384(SB), Y0, Y5 \
	VPADDQ       fexpc<>+416(SB), Y3, Y3 \
	VPSLLQ       $52, Y3, Y3 \
	VMULPD       Y3, Y5, Y5

// func ExpF64x4(dst []float64, src []float32, scale, shift float64) int
TEXT ·ExpF64x4(SB), NOSPLIT, $0-72
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	ANDQ         $-4, CX
	VBROADCASTSD scale+48(FP), Y14
	VBROADCASTSD shift+56(FP), Y15
	XORQ         AX, AX

exp64loop:
	CMPQ        AX, CX
	JGE         exp64done
	VCVTPS2PD   (SI)(AX*4), Y0
	VFMSUB213PD Y15, Y14, Y0
	RANGECHK(exp64done)
	EXPY0Y5
	VMOVUPD     Y5, (DI)(AX*8)
	ADDQ        $4, AX
	JMP         exp64loop

exp64done:
	VZEROUPPER
	MOVQ AX, ret+64(FP)
	RET

// func ExpF32(dst, src []float32, scale, shift float64) int
TEXT ·ExpF32(SB), NOSPLIT, $0-72
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	ANDQ         $-4, CX
	VBROADCASTSD scale+48(FP), Y14
	VBROADCASTSD shift+56(FP), Y15
	XORQ         AX, AX

exp32loop:
	CMPQ        AX, CX
	JGE         exp32done
	VCVTPS2PD   (SI)(AX*4), Y0
	VFMSUB213PD Y15, Y14, Y0
	RANGECHK(exp32done)
	EXPY0Y5
	VCVTPD2PSY  Y5, X5
	VMOVUPS     X5, (DI)(AX*4)
	ADDQ        $4, AX
	JMP         exp32loop

exp32done:
	VZEROUPPER
	MOVQ AX, ret+64(FP)
	RET

// func SigmoidGLU(o, a, b []float32) int
TEXT ·SigmoidGLU(SB), NOSPLIT, $0-80
	MOVQ   o_base+0(FP), DI
	MOVQ   a_base+24(FP), SI
	MOVQ   a_len+32(FP), CX
	ANDQ   $-4, CX
	MOVQ   b_base+48(FP), DX
	VXORPD Y15, Y15, Y15
	XORQ   AX, AX

gluloop:
	CMPQ      AX, CX
	JGE       gludone
	VCVTPS2PD (SI)(AX*4), Y0
	VSUBPD    Y0, Y15, Y0          // y = 0 − a = −a
	RANGECHK(gludone)
	EXPY0Y5
	VADDPD    fexpc<>+384(SB), Y5, Y5   // 1 + e^−a
	VCVTPS2PD (DX)(AX*4), Y6
	VDIVPD    Y5, Y6, Y6           // b / (1 + e^−a)
	VCVTPD2PSY Y6, X6
	VMOVUPS   X6, (DI)(AX*4)
	ADDQ      $4, AX
	JMP       gluloop

gludone:
	VZEROUPPER
	MOVQ AX, ret+72(FP)
	RET

// func SigmoidGLUBwd(da, db, a, b, g []float32) int
TEXT ·SigmoidGLUBwd(SB), NOSPLIT, $0-128
	MOVQ   da_base+0(FP), DI
	MOVQ   db_base+24(FP), R8
	MOVQ   a_base+48(FP), SI
	MOVQ   a_len+56(FP), CX
	ANDQ   $-4, CX
	MOVQ   b_base+72(FP), DX
	MOVQ   g_base+96(FP), R9
	VXORPD Y15, Y15, Y15
	VMOVAPD fexpc<>+384(SB), Y14
	XORQ   AX, AX

glubloop:
	CMPQ      AX, CX
	JGE       glubdone
	VCVTPS2PD (SI)(AX*4), Y0
	VSUBPD    Y0, Y15, Y0          // y = −a
	RANGECHK(glubdone)
	EXPY0Y5
	VADDPD    Y14, Y5, Y5          // 1 + e^−a
	VDIVPD    Y5, Y14, Y6          // s = 1 / (1 + e^−a)
	VCVTPS2PD (R9)(AX*4), Y7       // g
	VCVTPS2PD (DX)(AX*4), Y8       // b
	VSUBPD    Y6, Y14, Y9          // 1 − s
	VMULPD    Y9, Y6, Y9           // s·(1 − s)
	VMULPD    Y8, Y7, Y8           // g·b
	VMULPD    Y9, Y8, Y8           // (g·b)·(s·(1 − s))
	VCVTPD2PSY Y8, X8
	VMOVUPS   X8, (DI)(AX*4)
	VMULPD    Y6, Y7, Y7           // g·s
	VCVTPD2PSY Y7, X7
	VMOVUPS   X7, (R8)(AX*4)
	ADDQ      $4, AX
	JMP       glubloop

glubdone:
	VZEROUPPER
	MOVQ AX, ret+120(FP)
	RET

// func ScaleF64ToF32(dst []float32, src []float64, s float64)
TEXT ·ScaleF64ToF32(SB), NOSPLIT, $0-56
	MOVQ         dst_base+0(FP), DI
	MOVQ         src_base+24(FP), SI
	MOVQ         src_len+32(FP), CX
	ANDQ         $-4, CX
	VBROADCASTSD s+48(FP), Y15
	XORQ         AX, AX

scaleloop:
	CMPQ       AX, CX
	JGE        scaledone
	VMULPD     (SI)(AX*8), Y15, Y0
	VCVTPD2PSY Y0, X0
	VMOVUPS    X0, (DI)(AX*4)
	ADDQ       $4, AX
	JMP        scaleloop

scaledone:
	VZEROUPPER
	RET

// func DSoftmaxF32(dp, p []float32, delta float64)
TEXT ·DSoftmaxF32(SB), NOSPLIT, $0-56
	MOVQ         dp_base+0(FP), DI
	MOVQ         dp_len+8(FP), CX
	ANDQ         $-4, CX
	MOVQ         p_base+24(FP), SI
	VBROADCASTSD delta+48(FP), Y15
	XORQ         AX, AX

dsloop:
	CMPQ       AX, CX
	JGE        dsdone
	VCVTPS2PD  (DI)(AX*4), Y1
	VSUBPD     Y15, Y1, Y1         // dp − δ
	VCVTPS2PD  (SI)(AX*4), Y0
	VMULPD     Y1, Y0, Y0          // p·(dp − δ)
	VCVTPD2PSY Y0, X0
	VMOVUPS    X0, (DI)(AX*4)
	ADDQ       $4, AX
	JMP        dsloop

dsdone:
	VZEROUPPER
	RET

// func NormModF32(out, x, sc, sh []float32, mean, rstd float64)
TEXT ·NormModF32(SB), NOSPLIT, $0-112
	MOVQ         out_base+0(FP), DI
	MOVQ         x_base+24(FP), SI
	MOVQ         x_len+32(FP), CX
	ANDQ         $-4, CX
	MOVQ         sc_base+48(FP), DX
	MOVQ         sh_base+72(FP), R8
	VBROADCASTSD mean+96(FP), Y14
	VBROADCASTSD rstd+104(FP), Y15
	VMOVAPD      fexpc<>+384(SB), Y13
	XORQ         AX, AX

nmloop:
	CMPQ       AX, CX
	JGE        nmdone
	VCVTPS2PD  (SI)(AX*4), Y0
	VSUBPD     Y14, Y0, Y0         // x − mean
	VMULPD     Y15, Y0, Y0         // ·rstd
	VCVTPS2PD  (DX)(AX*4), Y1
	VADDPD     Y13, Y1, Y1         // 1 + scale
	VMULPD     Y1, Y0, Y0
	VCVTPS2PD  (R8)(AX*4), Y2
	VADDPD     Y2, Y0, Y0          // + shift
	VCVTPD2PSY Y0, X0
	VMOVUPS    X0, (DI)(AX*4)
	ADDQ       $4, AX
	JMP        nmloop

nmdone:
	VZEROUPPER
	RET

// func NormBwdPrep(g, nh []float64, dy, x, sc []float32, mean, rstd float64)
TEXT ·NormBwdPrep(SB), NOSPLIT, $0-136
	MOVQ         g_base+0(FP), DI
	MOVQ         nh_base+24(FP), R8
	MOVQ         dy_base+48(FP), SI
	MOVQ         dy_len+56(FP), CX
	ANDQ         $-4, CX
	MOVQ         x_base+72(FP), DX
	MOVQ         sc_base+96(FP), R9
	VBROADCASTSD mean+120(FP), Y14
	VBROADCASTSD rstd+128(FP), Y15
	VMOVAPD      fexpc<>+384(SB), Y13
	XORQ         AX, AX

nbploop:
	CMPQ      AX, CX
	JGE       nbpdone
	VCVTPS2PD (R9)(AX*4), Y1
	VADDPD    Y13, Y1, Y1          // 1 + scale
	VCVTPS2PD (SI)(AX*4), Y0
	VMULPD    Y1, Y0, Y0           // dy·(1 + scale)
	VMOVUPD   Y0, (DI)(AX*8)
	VCVTPS2PD (DX)(AX*4), Y2
	VSUBPD    Y14, Y2, Y2          // x − mean
	VMULPD    Y15, Y2, Y2          // ·rstd
	VMOVUPD   Y2, (R8)(AX*8)
	ADDQ      $4, AX
	JMP       nbploop

nbpdone:
	VZEROUPPER
	RET

// func NormBwdDX(dx []float32, g, nh []float64, rstd, mg, mgn float64)
TEXT ·NormBwdDX(SB), NOSPLIT, $0-96
	MOVQ         dx_base+0(FP), DI
	MOVQ         dx_len+8(FP), CX
	ANDQ         $-4, CX
	MOVQ         g_base+24(FP), SI
	MOVQ         nh_base+48(FP), DX
	VBROADCASTSD rstd+72(FP), Y13
	VBROADCASTSD mg+80(FP), Y14
	VBROADCASTSD mgn+88(FP), Y15
	XORQ         AX, AX

nbdloop:
	CMPQ       AX, CX
	JGE        nbddone
	VMOVUPD    (SI)(AX*8), Y0
	VSUBPD     Y14, Y0, Y0         // g − mg
	VMULPD     (DX)(AX*8), Y15, Y1 // n̂·mgn
	VSUBPD     Y1, Y0, Y0
	VMULPD     Y0, Y13, Y0         // rstd·(…)
	VCVTPD2PSY Y0, X0
	VMOVUPS    X0, (DI)(AX*4)
	ADDQ       $4, AX
	JMP        nbdloop

nbddone:
	VZEROUPPER
	RET

// Sgemm epilogue, shared by the micro-kernels: C[6×16] (DI, row stride R8 bytes) =
// (alpha·acc) + (beta·C) with acc in Y0–Y11 (row r in Y(2r), Y(2r+1)); C is not read when
// beta is ±0.
#define SGBETA(r0, r1) \
	VMULPS (SI), Y15, Y12 \
	VADDPS Y12, r0, r0 \
	VMULPS 32(SI), Y15, Y13 \
	VADDPS Y13, r1, r1 \
	ADDQ   R8, SI

#define SGSTORE(r0, r1) \
	VMOVUPS r0, (DI) \
	VMOVUPS r1, 32(DI) \
	ADDQ    R8, DI

#define SGEPILOGUE(alpha, beta, skip) \
	VBROADCASTSS alpha, Y14 \
	VMULPS       Y14, Y0, Y0 \
	VMULPS       Y14, Y1, Y1 \
	VMULPS       Y14, Y2, Y2 \
	VMULPS       Y14, Y3, Y3 \
	VMULPS       Y14, Y4, Y4 \
	VMULPS       Y14, Y5, Y5 \
	VMULPS       Y14, Y6, Y6 \
	VMULPS       Y14, Y7, Y7 \
	VMULPS       Y14, Y8, Y8 \
	VMULPS       Y14, Y9, Y9 \
	VMULPS       Y14, Y10, Y10 \
	VMULPS       Y14, Y11, Y11 \
	MOVL         beta, DX \
	ANDL         $0x7fffffff, DX \
	JEQ          skip \
	VBROADCASTSS beta, Y15 \
	MOVQ         DI, SI \
	SGBETA(Y0, Y1) \
	SGBETA(Y2, Y3) \
	SGBETA(Y4, Y5) \
	SGBETA(Y6, Y7) \
	SGBETA(Y8, Y9) \
	SGBETA(Y10, Y11) \
skip: \
	SGSTORE(Y0, Y1) \
	SGSTORE(Y2, Y3) \
	SGSTORE(Y4, Y5) \
	SGSTORE(Y6, Y7) \
	SGSTORE(Y8, Y9) \
	SGSTORE(Y10, Y11) \
	VZEROUPPER

#define SGZERO \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	VXORPS Y2, Y2, Y2 \
	VXORPS Y3, Y3, Y3 \
	VXORPS Y4, Y4, Y4 \
	VXORPS Y5, Y5, Y5 \
	VXORPS Y6, Y6, Y6 \
	VXORPS Y7, Y7, Y7 \
	VXORPS Y8, Y8, Y8 \
	VXORPS Y9, Y9, Y9 \
	VXORPS Y10, Y10, Y10 \
	VXORPS Y11, Y11, Y11

// SGROW(off, t) accumulates row r of the 6×16 block: broadcast A(r, p) from off, two FMAs
// with the B row in Y12, Y13.
#define SGFMA(t, r0, r1) \
	VFMADD231PS Y12, t, r0 \
	VFMADD231PS Y13, t, r1

// func Sgemm6x16(k int, a []float32, as int, b, c []float32, ldc int, alpha, beta float32)
//
// The GEMM micro-kernel with A in column panels: A(r, p) = a[p·as + r] (packed panels
// have as = 6; a transposed A is read in place with as = its leading dimension), B packed
// (k groups of 16 values): C[6×16] (row stride ldc) = alpha·(A·B) + beta·C, A·B
// accumulated in float32 with fused multiply-adds over p = 0..k−1 in order.
TEXT ·Sgemm6x16(SB), NOSPLIT, $0-104
	MOVQ k+0(FP), CX
	MOVQ a_base+8(FP), AX
	MOVQ as+32(FP), R10
	SHLQ $2, R10
	MOVQ b_base+40(FP), BX
	MOVQ c_base+64(FP), DI
	MOVQ ldc+88(FP), R8
	SHLQ $2, R8
	SGZERO
	TESTQ CX, CX
	JEQ   sgepi

sgloop:
	VMOVUPS      (BX), Y12
	VMOVUPS      32(BX), Y13
	VBROADCASTSS (AX), Y14
	SGFMA(Y14, Y0, Y1)
	VBROADCASTSS 4(AX), Y15
	SGFMA(Y15, Y2, Y3)
	VBROADCASTSS 8(AX), Y14
	SGFMA(Y14, Y4, Y5)
	VBROADCASTSS 12(AX), Y15
	SGFMA(Y15, Y6, Y7)
	VBROADCASTSS 16(AX), Y14
	SGFMA(Y14, Y8, Y9)
	VBROADCASTSS 20(AX), Y15
	SGFMA(Y15, Y10, Y11)
	ADDQ         R10, AX
	ADDQ         $64, BX
	DECQ         CX
	JNE          sgloop

sgepi:
	SGEPILOGUE(alpha+96(FP), beta+100(FP), sgstore)
	RET

// func Sgemm6x16R(k int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32)
//
// Sgemm6x16 with A in rows: A(r, p) = a[r·lda + p] (a row-major A read in place).
TEXT ·Sgemm6x16R(SB), NOSPLIT, $0-104
	MOVQ k+0(FP), CX
	MOVQ a_base+8(FP), AX
	MOVQ lda+32(FP), R10
	SHLQ $2, R10          // lda in bytes
	LEAQ (R10)(R10*2), R11 // 3·lda
	LEAQ (R10)(R10*4), R12 // 5·lda
	MOVQ b_base+40(FP), BX
	MOVQ c_base+64(FP), DI
	MOVQ ldc+88(FP), R8
	SHLQ $2, R8
	SGZERO
	TESTQ CX, CX
	JEQ   sgrepi

sgrloop:
	VMOVUPS      (BX), Y12
	VMOVUPS      32(BX), Y13
	VBROADCASTSS (AX), Y14
	SGFMA(Y14, Y0, Y1)
	VBROADCASTSS (AX)(R10*1), Y15
	SGFMA(Y15, Y2, Y3)
	VBROADCASTSS (AX)(R10*2), Y14
	SGFMA(Y14, Y4, Y5)
	VBROADCASTSS (AX)(R11*1), Y15
	SGFMA(Y15, Y6, Y7)
	VBROADCASTSS (AX)(R10*4), Y14
	SGFMA(Y14, Y8, Y9)
	VBROADCASTSS (AX)(R12*1), Y15
	SGFMA(Y15, Y10, Y11)
	ADDQ         $4, AX
	ADDQ         $64, BX
	DECQ         CX
	JNE          sgrloop

sgrepi:
	SGEPILOGUE(alpha+96(FP), beta+100(FP), sgrstore)
	RET
