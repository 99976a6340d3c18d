// bfloat16 for the cudasim build: __nv_bfloat16 / __nv_bfloat162 with the bit layout and the function
// names of the toolkit's cuda_bf16.h, written for g++ (no toolkit needed).
//
// Layout: __nv_bfloat16 is one 16-bit word (sign, 8 exponent bits, 7 mantissa bits = the upper half of
// an IEEE binary32), 2-byte aligned; __nv_bfloat162 is {x, y} with x in the low 16 bits of a 4-byte
// aligned word. Rounding: the *_rn conversions round to nearest even, like cvt.rn.bf16.f32; a NaN input
// gives the canonical NaN 0x7fff (what cuda_bf16.h and cvt produce), never an infinity.
//
// Which members exist mirrors cuda_bf16.h under nvcc for sm_80+: implicit conversions from/to float,
// double and the integer types, and arithmetic / comparison operators. Code that compiles here with
// these types should therefore compile under nvcc, and the other way round. The raw bits are private
// (as in cuda_bf16.h): use __bfloat16_as_ushort / __ushort_as_bfloat16.
#ifndef MDM_CUDASIM_BF16_H
#define MDM_CUDASIM_BF16_H

#if defined(__CUDACC__)
#error "kernels/sim/bf16.h is for the g++ simulator build only; nvcc uses <cuda_bf16.h>"
#endif

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vector_types.h"

struct __nv_bfloat16_raw {
    unsigned short x;
};
struct __nv_bfloat162_raw {
    unsigned short x, y;
};

struct __nv_bfloat16;
namespace cudasim::bf16detail {
// Round-to-nearest-even float -> bf16 bits; NaN -> canonical 0x7fff.
constexpr unsigned short f32_to_bits_rn(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    u += 0x7fffu + ((u >> 16) & 1u);  // adds half an ulp, plus one more when the kept lsb is odd (ties to even)
    return static_cast<unsigned short>(u >> 16);
}
// Round-toward-zero float -> bf16 bits (truncation); NaN -> canonical 0x7fff.
constexpr unsigned short f32_to_bits_rz(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    return static_cast<unsigned short>(u >> 16);
}
// Correctly rounded double -> bf16: first to float with round-to-odd (so the later rounding cannot hit
// a false tie: float keeps 16 more bits than bf16), then float -> bf16 with round-to-nearest-even.
inline unsigned short f64_to_bits_rn(double d) {
    if (std::isnan(d)) return 0x7fffu;
    double a = std::fabs(d);
    float f = static_cast<float>(a);
    if (static_cast<double>(f) != a) {
        uint32_t u = std::bit_cast<uint32_t>(f);
        if ((u & 1u) == 0) u = static_cast<double>(f) < a ? u + 1u : u - 1u;  // step toward a onto the odd neighbour
        f = std::bit_cast<float>(u);
    }
    unsigned short r = f32_to_bits_rn(f);
    return std::signbit(d) ? static_cast<unsigned short>(r | 0x8000u) : r;
}
constexpr float bits_to_f32(unsigned short h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
}  // namespace cudasim::bf16detail

struct alignas(2) __nv_bfloat16 {
   private:
    unsigned short __x;

   public:
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
    constexpr __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) {
        __x = r.x;
        return *this;
    }
    constexpr operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }

    constexpr __nv_bfloat16(float f) : __x(cudasim::bf16detail::f32_to_bits_rn(f)) {}
    __nv_bfloat16(double d) : __x(cudasim::bf16detail::f64_to_bits_rn(d)) {}
    __nv_bfloat16(short v) : __x(cudasim::bf16detail::f64_to_bits_rn(v)) {}
    __nv_bfloat16(unsigned short v) : __x(cudasim::bf16detail::f64_to_bits_rn(v)) {}
    __nv_bfloat16(int v) : __x(cudasim::bf16detail::f64_to_bits_rn(v)) {}
    __nv_bfloat16(unsigned int v) : __x(cudasim::bf16detail::f64_to_bits_rn(v)) {}
    __nv_bfloat16(long long v) : __x(cudasim::bf16detail::f64_to_bits_rn(static_cast<double>(v))) {}
    __nv_bfloat16(unsigned long long v) : __x(cudasim::bf16detail::f64_to_bits_rn(static_cast<double>(v))) {}

    constexpr operator float() const { return cudasim::bf16detail::bits_to_f32(__x); }
    // Integer conversions truncate toward zero, as the _rz conversions of cuda_bf16.h.
    operator short() const { return static_cast<short>(static_cast<float>(*this)); }
    operator unsigned short() const { return static_cast<unsigned short>(static_cast<float>(*this)); }
    operator int() const { return static_cast<int>(static_cast<float>(*this)); }
    operator unsigned int() const { return static_cast<unsigned int>(static_cast<float>(*this)); }
    operator long long() const { return static_cast<long long>(static_cast<float>(*this)); }
    operator unsigned long long() const { return static_cast<unsigned long long>(static_cast<float>(*this)); }
    constexpr operator bool() const { return (__x & 0x7fffu) != 0; }

    __nv_bfloat16& operator=(float f) { return *this = __nv_bfloat16(f); }
    __nv_bfloat16& operator=(double d) { return *this = __nv_bfloat16(d); }
};

struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
    __nv_bfloat162() = default;
    constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
    constexpr __nv_bfloat162(const __nv_bfloat162_raw& r)
        : x(__nv_bfloat16_raw{r.x}), y(__nv_bfloat16_raw{r.y}) {}
    constexpr operator __nv_bfloat162_raw() const {
        return __nv_bfloat162_raw{static_cast<__nv_bfloat16_raw>(x).x, static_cast<__nv_bfloat16_raw>(y).x};
    }
};

static_assert(sizeof(__nv_bfloat16) == 2 && alignof(__nv_bfloat16) == 2, "bf16 layout");
static_assert(sizeof(__nv_bfloat162) == 4 && alignof(__nv_bfloat162) == 4, "bf162 layout");
static_assert(std::is_trivially_default_constructible_v<__nv_bfloat16>, "__shared__ bf16 arrays need a trivial ctor");

// ---- bits and conversions -------------------------------------------------------------------------
inline constexpr unsigned short __bfloat16_as_ushort(const __nv_bfloat16 h) {
    return static_cast<__nv_bfloat16_raw>(h).x;
}
inline constexpr __nv_bfloat16 __ushort_as_bfloat16(const unsigned short u) { return __nv_bfloat16_raw{u}; }
inline constexpr short __bfloat16_as_short(const __nv_bfloat16 h) { return static_cast<short>(__bfloat16_as_ushort(h)); }
inline constexpr __nv_bfloat16 __short_as_bfloat16(const short s) { return __nv_bfloat16_raw{static_cast<unsigned short>(s)}; }

inline constexpr float __bfloat162float(const __nv_bfloat16 h) {
    return cudasim::bf16detail::bits_to_f32(__bfloat16_as_ushort(h));
}
inline constexpr __nv_bfloat16 __float2bfloat16_rn(const float f) {
    return __nv_bfloat16_raw{cudasim::bf16detail::f32_to_bits_rn(f)};
}
inline constexpr __nv_bfloat16 __float2bfloat16(const float f) { return __float2bfloat16_rn(f); }
inline constexpr __nv_bfloat16 __float2bfloat16_rz(const float f) {
    return __nv_bfloat16_raw{cudasim::bf16detail::f32_to_bits_rz(f)};
}
inline __nv_bfloat16 __double2bfloat16(const double d) { return __nv_bfloat16_raw{cudasim::bf16detail::f64_to_bits_rn(d)}; }
inline __nv_bfloat16 __int2bfloat16_rn(const int i) { return __double2bfloat16(i); }
inline int __bfloat162int_rz(const __nv_bfloat16 h) { return static_cast<int>(__bfloat162float(h)); }
inline int __bfloat162int_rn(const __nv_bfloat16 h) { return static_cast<int>(std::nearbyint(__bfloat162float(h))); }

inline constexpr __nv_bfloat162 make_bfloat162(const __nv_bfloat16 x, const __nv_bfloat16 y) { return __nv_bfloat162(x, y); }
inline constexpr __nv_bfloat162 __halves2bfloat162(const __nv_bfloat16 lo, const __nv_bfloat16 hi) { return __nv_bfloat162(lo, hi); }
inline constexpr __nv_bfloat162 __bfloat162bfloat162(const __nv_bfloat16 h) { return __nv_bfloat162(h, h); }
inline constexpr __nv_bfloat162 __floats2bfloat162_rn(const float lo, const float hi) {
    return __nv_bfloat162(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
}
inline constexpr __nv_bfloat162 __float2bfloat162_rn(const float f) { return __floats2bfloat162_rn(f, f); }
inline constexpr __nv_bfloat162 __float22bfloat162_rn(const float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
inline constexpr float2 __bfloat1622float2(const __nv_bfloat162 h) {
    return float2{__bfloat162float(h.x), __bfloat162float(h.y)};
}
inline constexpr float __low2float(const __nv_bfloat162 h) { return __bfloat162float(h.x); }
inline constexpr float __high2float(const __nv_bfloat162 h) { return __bfloat162float(h.y); }
inline constexpr __nv_bfloat16 __low2bfloat16(const __nv_bfloat162 h) { return h.x; }
inline constexpr __nv_bfloat16 __high2bfloat16(const __nv_bfloat162 h) { return h.y; }
inline constexpr __nv_bfloat162 __lows2bfloat162(const __nv_bfloat162 a, const __nv_bfloat162 b) { return __nv_bfloat162(a.x, b.x); }
inline constexpr __nv_bfloat162 __highs2bfloat162(const __nv_bfloat162 a, const __nv_bfloat162 b) { return __nv_bfloat162(a.y, b.y); }
inline constexpr __nv_bfloat162 __lowhigh2highlow(const __nv_bfloat162 h) { return __nv_bfloat162(h.y, h.x); }

// ---- arithmetic: exact in double, rounded once to bf16 (what the sm_80+ bf16 fma/add/mul units do) ---
inline __nv_bfloat16 __hadd(const __nv_bfloat16 a, const __nv_bfloat16 b) { return __double2bfloat16(double(float(a)) + double(float(b))); }
inline __nv_bfloat16 __hsub(const __nv_bfloat16 a, const __nv_bfloat16 b) { return __double2bfloat16(double(float(a)) - double(float(b))); }
inline __nv_bfloat16 __hmul(const __nv_bfloat16 a, const __nv_bfloat16 b) { return __double2bfloat16(double(float(a)) * double(float(b))); }
inline __nv_bfloat16 __hdiv(const __nv_bfloat16 a, const __nv_bfloat16 b) { return __float2bfloat16_rn(float(a) / float(b)); }
inline __nv_bfloat16 __hfma(const __nv_bfloat16 a, const __nv_bfloat16 b, const __nv_bfloat16 c) {
    return __double2bfloat16(double(float(a)) * double(float(b)) + double(float(c)));
}
inline constexpr __nv_bfloat16 __hneg(const __nv_bfloat16 a) { return __ushort_as_bfloat16(__bfloat16_as_ushort(a) ^ 0x8000u); }
inline constexpr __nv_bfloat16 __habs(const __nv_bfloat16 a) { return __ushort_as_bfloat16(__bfloat16_as_ushort(a) & 0x7fffu); }
inline bool __hisnan(const __nv_bfloat16 a) { return (__bfloat16_as_ushort(a) & 0x7fffu) > 0x7f80u; }
inline int __hisinf(const __nv_bfloat16 a) {
    unsigned short u = __bfloat16_as_ushort(a);
    return u == 0x7f80u ? 1 : (u == 0xff80u ? -1 : 0);
}
// __hmax/__hmin: a NaN operand is ignored (returns the other), both NaN -> canonical NaN (PTX max.bf16).
inline __nv_bfloat16 __hmax(const __nv_bfloat16 a, const __nv_bfloat16 b) {
    if (__hisnan(a)) return __hisnan(b) ? __ushort_as_bfloat16(0x7fffu) : b;
    if (__hisnan(b)) return a;
    return float(a) >= float(b) ? a : b;
}
inline __nv_bfloat16 __hmin(const __nv_bfloat16 a, const __nv_bfloat16 b) {
    if (__hisnan(a)) return __hisnan(b) ? __ushort_as_bfloat16(0x7fffu) : b;
    if (__hisnan(b)) return a;
    return float(a) <= float(b) ? a : b;
}
inline bool __heq(const __nv_bfloat16 a, const __nv_bfloat16 b) { return float(a) == float(b); }
inline bool __hne(const __nv_bfloat16 a, const __nv_bfloat16 b) { return float(a) != float(b) && !__hisnan(a) && !__hisnan(b); }
inline bool __hlt(const __nv_bfloat16 a, const __nv_bfloat16 b) { return float(a) < float(b); }
inline bool __hle(const __nv_bfloat16 a, const __nv_bfloat16 b) { return float(a) <= float(b); }
inline bool __hgt(const __nv_bfloat16 a, const __nv_bfloat16 b) { return float(a) > float(b); }
inline bool __hge(const __nv_bfloat16 a, const __nv_bfloat16 b) { return float(a) >= float(b); }

inline __nv_bfloat162 __hadd2(const __nv_bfloat162 a, const __nv_bfloat162 b) { return {__hadd(a.x, b.x), __hadd(a.y, b.y)}; }
inline __nv_bfloat162 __hsub2(const __nv_bfloat162 a, const __nv_bfloat162 b) { return {__hsub(a.x, b.x), __hsub(a.y, b.y)}; }
inline __nv_bfloat162 __hmul2(const __nv_bfloat162 a, const __nv_bfloat162 b) { return {__hmul(a.x, b.x), __hmul(a.y, b.y)}; }
inline __nv_bfloat162 __h2div(const __nv_bfloat162 a, const __nv_bfloat162 b) { return {__hdiv(a.x, b.x), __hdiv(a.y, b.y)}; }
inline __nv_bfloat162 __hfma2(const __nv_bfloat162 a, const __nv_bfloat162 b, const __nv_bfloat162 c) {
    return {__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)};
}
inline __nv_bfloat162 __hneg2(const __nv_bfloat162 a) { return {__hneg(a.x), __hneg(a.y)}; }
inline __nv_bfloat162 __habs2(const __nv_bfloat162 a) { return {__habs(a.x), __habs(a.y)}; }
inline __nv_bfloat162 __hmax2(const __nv_bfloat162 a, const __nv_bfloat162 b) { return {__hmax(a.x, b.x), __hmax(a.y, b.y)}; }
inline __nv_bfloat162 __hmin2(const __nv_bfloat162 a, const __nv_bfloat162 b) { return {__hmin(a.x, b.x), __hmin(a.y, b.y)}; }

// ---- operators (cuda_bf16.h defines these for device code on sm_80+) ---------------------------------
inline __nv_bfloat16 operator+(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hadd(a, b); }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hsub(a, b); }
inline __nv_bfloat16 operator*(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hmul(a, b); }
inline __nv_bfloat16 operator/(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hdiv(a, b); }
inline __nv_bfloat16& operator+=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hadd(a, b); }
inline __nv_bfloat16& operator-=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hsub(a, b); }
inline __nv_bfloat16& operator*=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hmul(a, b); }
inline __nv_bfloat16& operator/=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hdiv(a, b); }
inline __nv_bfloat16 operator+(const __nv_bfloat16& a) { return a; }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a) { return __hneg(a); }
inline bool operator==(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __heq(a, b); }
inline bool operator!=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hne(a, b); }
inline bool operator<(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hlt(a, b); }
inline bool operator<=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hle(a, b); }
inline bool operator>(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hgt(a, b); }
inline bool operator>=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hge(a, b); }

inline __nv_bfloat162 operator+(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hadd2(a, b); }
inline __nv_bfloat162 operator-(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hsub2(a, b); }
inline __nv_bfloat162 operator*(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hmul2(a, b); }
inline __nv_bfloat162 operator/(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __h2div(a, b); }
inline __nv_bfloat162& operator+=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __hadd2(a, b); }
inline __nv_bfloat162& operator-=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __hsub2(a, b); }
inline __nv_bfloat162& operator*=(__nv_bfloat162& a, const __nv_bfloat162& b) { return a = __hmul2(a, b); }
inline __nv_bfloat162 operator-(const __nv_bfloat162& a) { return __hneg2(a); }
inline bool operator==(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __heq(a.x, b.x) && __heq(a.y, b.y); }
inline bool operator!=(const __nv_bfloat162& a, const __nv_bfloat162& b) { return __hne(a.x, b.x) && __hne(a.y, b.y); }

#endif  // MDM_CUDASIM_BF16_H
