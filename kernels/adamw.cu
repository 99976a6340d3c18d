// adamw.cu: fused AdamW + EMA + bf16 shadow copy for one fp32 master tensor (md4.md §6.3;
// ops.AdamWParams; architecture.md §3 step 7; pitfalls B13).
//
// Math, per element, in float32 with every operation rounded once, in this order:
//   g = gs·grad;  m = b1·m + (1−b1)·g;  v = b2·v + ((1−b2)·g)·g
//   p = p − lr·( (m/bc1) / (sqrt(v/bc2) + eps) + wd·p )        (decoupled decay, fp32 master)
//   ema = ema + (1−d)·(p − ema)   (if EMA);   shadow = bf16_rne(p)   (if Shadow)
// The scalars (gs, b1, 1−b1, b2, 1−b2, bc1 = 1−b1^step, bc2 = 1−b2^step, lr, eps, wd, 1−d) are
// computed in float64 on the host (ops.AdamWParams.BiasCorrections) and rounded once to float32,
// exactly as the CPU backend does.
//
// Bit-identity with the CPU (engine/cpu/adamw.go on amd64, where Go rounds every operation): nvcc
// would contract a·b + c into an FMA (-fmad=true is the default) and change the last bit, so every
// operation is an explicit round-to-nearest intrinsic (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn),
// which nvcc never fuses; sqrt/div are IEEE-exact in both worlds and denormals are kept (no ftz). The
// CPU takes sqrt in float64 and rounds to float32, which equals the float32 correctly rounded sqrt.
// The bf16 shadow uses the CPU's integer rounding (mdm::f32_to_bf16_bits of common.cuh = BF16FromF32:
// ties to even, NaN stays NaN with its sign and top payload bits), not __float2bfloat16_rn, whose NaN
// encoding differs.
// Tested bit for bit against the CPU in cuda/adamw_test.go.
//
// Shapes: Param, Grad, M, V, EMA [n] f32 (any shape, flattened, contiguous); Shadow [n] bf16. EMA and
// Shadow may be null. Any n < 2^31 (odd tails are handled element by element).
// Saved tensors: none. Determinism: elementwise, no reductions, no atomics.
//
// Vectorisation: element groups [4g, 4g+4) are processed by one thread; with vec != 0 (the launcher
// sets it when Param, Grad, M, V, EMA are 16-byte and Shadow 8-byte aligned) whole groups use 128-bit
// loads/stores (64-bit for the shadow); the tail group and unaligned tensors go element by element.
// Both paths compute the same bits.
//
// Launch contract (mirrored in cuda/adamw.go): grid ceil(ceil(n/4)/256) capped at ADAMW_MAX_BLOCKS
// (grid-stride loop), block ADAMW_THREADS = 256, no shared memory.
// Go launcher: cuda/adamw.go (Backend.AdamW); tests cuda/adamw_test.go.
// Lab history: v1 (this). Memory bound: 20 bytes read + 16 written per element (+4/+2 with EMA/Shadow).
#include "compat.cuh"
#include "common.cuh"  // mdm::f32_to_bf16_bits (engine/cpu.BF16FromF32, bit for bit)

#define ADAMW_THREADS 256
#define ADAMW_MAX_BLOCKS 65535

namespace adamw_detail {

struct Hyper {
    float gs, b1, omb1, b2, omb2, bc1, bc2, lr, eps, wd, om_ema;
};

__device__ __forceinline__ float lane(const float4& x, int k) { return k == 0 ? x.x : k == 1 ? x.y : k == 2 ? x.z : x.w; }
__device__ __forceinline__ void set_lane(float4& x, int k, float y) {
    x.x = k == 0 ? y : x.x;
    x.y = k == 1 ? y : x.y;
    x.z = k == 2 ? y : x.z;
    x.w = k == 3 ? y : x.w;
}

// step updates one element in registers (e, the EMA, only when has_ema).
__device__ __forceinline__ void step(float& p, float grad, float& m, float& v, bool has_ema, float& e, const Hyper& h) {
    const float g = __fmul_rn(h.gs, grad);
    m = __fadd_rn(__fmul_rn(h.b1, m), __fmul_rn(h.omb1, g));
    v = __fadd_rn(__fmul_rn(h.b2, v), __fmul_rn(__fmul_rn(h.omb2, g), g));
    const float mhat = __fdiv_rn(m, h.bc1);
    const float vhat = __fdiv_rn(v, h.bc2);
    const float upd = __fadd_rn(__fdiv_rn(mhat, __fadd_rn(__fsqrt_rn(vhat), h.eps)), __fmul_rn(h.wd, p));
    p = __fsub_rn(p, __fmul_rn(h.lr, upd));
    if (has_ema) e = __fadd_rn(e, __fmul_rn(h.om_ema, __fsub_rn(p, e)));
}

}  // namespace adamw_detail

KERNEL void __launch_bounds__(ADAMW_THREADS)
    adamw_step_f32(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m_,
                   float* __restrict__ v_, float* __restrict__ ema, __nv_bfloat16* __restrict__ shadow, long long n,
                   int vec, float gs, float b1, float omb1, float b2, float omb2, float bc1, float bc2, float lr,
                   float eps, float wd, float om_ema) {
    using namespace adamw_detail;
    const Hyper h{gs, b1, omb1, b2, omb2, bc1, bc2, lr, eps, wd, om_ema};
    unsigned short* sh = reinterpret_cast<unsigned short*>(shadow);
    const int ngroups = (int)((n + 3) / 4);  // n < 2^31 (launcher)
    for (int gi = blockIdx.x * blockDim.x + threadIdx.x; gi < ngroups; gi += gridDim.x * blockDim.x) {
        const long long i0 = 4LL * gi;
        if (vec && i0 + 4 <= n) {
            float4 p = *reinterpret_cast<const float4*>(param + i0);
            const float4 g = *reinterpret_cast<const float4*>(grad + i0);
            float4 m = *reinterpret_cast<const float4*>(m_ + i0);
            float4 v = *reinterpret_cast<const float4*>(v_ + i0);
            float4 e = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (ema != nullptr) e = *reinterpret_cast<const float4*>(ema + i0);
            const bool has_ema = ema != nullptr;
            // Not unrolled on purpose: unrolled, the 12 slow-path subroutine calls of __fdiv_rn /
            // __fsqrt_rn make ptxas (sm_90) spill; lanes are picked from registers by selects.
#pragma unroll 1
            for (int k = 0; k < 4; ++k) {
                float pk = lane(p, k), mk = lane(m, k), vk = lane(v, k), ek = lane(e, k);
                step(pk, lane(g, k), mk, vk, has_ema, ek, h);
                set_lane(p, k, pk);
                set_lane(m, k, mk);
                set_lane(v, k, vk);
                set_lane(e, k, ek);
            }
            *reinterpret_cast<float4*>(param + i0) = p;
            *reinterpret_cast<float4*>(m_ + i0) = m;
            *reinterpret_cast<float4*>(v_ + i0) = v;
            if (ema != nullptr) *reinterpret_cast<float4*>(ema + i0) = e;
            if (sh != nullptr) {
                const uint32_t lo = (uint32_t)mdm::f32_to_bf16_bits(p.x) | ((uint32_t)mdm::f32_to_bf16_bits(p.y) << 16);
                const uint32_t hi = (uint32_t)mdm::f32_to_bf16_bits(p.z) | ((uint32_t)mdm::f32_to_bf16_bits(p.w) << 16);
                *reinterpret_cast<uint2*>(sh + i0) = make_uint2(lo, hi);
            }
        } else {
            const long long i1 = i0 + 4 < n ? i0 + 4 : n;
            for (long long i = i0; i < i1; ++i) {
                float p = param[i], m = m_[i], v = v_[i], e = ema != nullptr ? ema[i] : 0.0f;
                step(p, grad[i], m, v, ema != nullptr, e, h);
                param[i] = p;
                m_[i] = m;
                v_[i] = v;
                if (ema != nullptr) ema[i] = e;
                if (sh != nullptr) sh[i] = mdm::f32_to_bf16_bits(p);
            }
        }
    }
}
