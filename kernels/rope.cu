// rope.cu: rotary position embedding (RoPE) over [B, L, H, Dh] (md4.md §6.1). Go launcher: cuda/rope.go.
//
// Math: for every position pos = 0..L-1, head h and pair k = 0..Dh/2-1, with θ_k = Theta^(-2k/Dh),
//   (out[2k], out[2k+1]) = (x[2k]·cos(pos·θ_k) − x[2k+1]·sin(pos·θ_k), x[2k]·sin(pos·θ_k) + x[2k+1]·cos(pos·θ_k)).
//   rope_bwd_* rotates by the negative angle: the backward pass (the rotation is orthogonal), also the
//   inverse. Out may be X (in place): every element is read and written by the same thread.
// Shapes: X, Out [B, L, H, Dh] row-major, Dh even; no saved tensors.
// Dtype policy: f32 or bf16 storage; θ_k, the angle, its sine and cosine and the rotation itself are
//   computed in double (as the CPU reference does), then rounded once to the storage type. The angle
//   reaches L radians, where an f32 angle would be off by ~L·6e-8 (above the f32 tolerance at L ~ 1k).
// Determinism: elementwise, no reductions.
// Launch contract: 1-D grid, 256 threads per block (__launch_bounds__(256)); thread i handles the pair
//   k = i % (Dh/2) of row r = i / (Dh/2) (r = b·L + pos) for all H heads (the sine and cosine are
//   computed once per (pos, k)); a grid-stride loop covers B·L·Dh/2 pairs. X and Out aligned to a pair
//   (8 bytes f32, 4 bytes bf16). Checked by the launcher.
// Registers (nvcc 11.8, sm_80 / sm_90): 32-36, no spills; the 48-byte stack frame is the local array of
//   the double sin/cos slow path (Payne-Hanek argument reduction for huge angles), never taken here.
// Lab history: v1 (this). Memory bound: one read and one write of X; the double-precision sincos is
//   amortised over H heads (full-rate FP64 on sm_80 / sm_90).
#include "compat.cuh"

namespace rope {

constexpr int kThreads = 256;  // mirrored in cuda/rope.go

template <class T>
struct Pair;
template <>
struct Pair<float> {
    static __device__ __forceinline__ void get(const float* p, double& a, double& b) {
        const float2 v = *reinterpret_cast<const float2*>(p);
        a = v.x;
        b = v.y;
    }
    static __device__ __forceinline__ void put(float* p, double a, double b) {
        *reinterpret_cast<float2*>(p) = make_float2(static_cast<float>(a), static_cast<float>(b));
    }
};
template <>
struct Pair<__nv_bfloat16> {
    static __device__ __forceinline__ void get(const __nv_bfloat16* p, double& a, double& b) {
        const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
        a = v.x;
        b = v.y;
    }
    static __device__ __forceinline__ void put(__nv_bfloat16* p, double a, double b) {
        *reinterpret_cast<__nv_bfloat162*>(p) = __halves2bfloat162(__double2bfloat16(a), __double2bfloat16(b));
    }
};

// sign = +1 (forward) or -1 (inverse / backward). x and out may alias (no __restrict__).
template <class T>
__device__ __forceinline__ void apply(T* out, const T* x, long long rows, long long L, long long H, long long D,
                                      double theta, double sign) {
    const long long half = D / 2, n = rows * half;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const long long r = i / half, k = i % half;
        const double freq = pow(theta, -static_cast<double>(2 * k) / static_cast<double>(D));
        double s, c;
        sincos(static_cast<double>(r % L) * freq, &s, &c);
        s *= sign;
        const long long base = r * H * D + 2 * k;
        for (long long h = 0; h < H; h++) {
            double x0, x1;
            Pair<T>::get(x + base + h * D, x0, x1);
            Pair<T>::put(out + base + h * D, x0 * c - x1 * s, x0 * s + x1 * c);
        }
    }
}

}  // namespace rope

KERNEL void __launch_bounds__(rope::kThreads)
    rope_fwd_f32(float* out, const float* x, long long rows, long long L, long long H, long long D, double theta) {
    rope::apply<float>(out, x, rows, L, H, D, theta, 1.0);
}

KERNEL void __launch_bounds__(rope::kThreads)
    rope_bwd_f32(float* out, const float* x, long long rows, long long L, long long H, long long D, double theta) {
    rope::apply<float>(out, x, rows, L, H, D, theta, -1.0);
}

KERNEL void __launch_bounds__(rope::kThreads)
    rope_fwd_bf16(__nv_bfloat16* out, const __nv_bfloat16* x, long long rows, long long L, long long H, long long D,
                  double theta) {
    rope::apply<__nv_bfloat16>(out, x, rows, L, H, D, theta, 1.0);
}

KERNEL void __launch_bounds__(rope::kThreads)
    rope_bwd_bf16(__nv_bfloat16* out, const __nv_bfloat16* x, long long rows, long long L, long long H, long long D,
                  double theta) {
    rope::apply<__nv_bfloat16>(out, x, rows, L, H, D, theta, -1.0);
}
