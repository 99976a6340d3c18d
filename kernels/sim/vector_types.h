// CUDA built-in vector types (uint3, dim3, float2, float4, int4, ...) for the cudasim build.
//
// Under nvcc these come from vector_types.h / vector_functions.h of the toolkit. The simulator must not
// depend on a toolkit, so this header re-declares the subset our kernels use, with the same member
// names, sizes and alignments (CUDA C++ Programming Guide, "Built-in Vector Types", alignment table):
// a float4 load here has the same 16-byte alignment requirement as an LDG.128 on the GPU.
#ifndef MDM_CUDASIM_VECTOR_TYPES_H
#define MDM_CUDASIM_VECTOR_TYPES_H

#if defined(__CUDACC__)
#error "kernels/sim/vector_types.h is for the g++ simulator build only"
#endif

// CUDASIM_VEC{1,2,3,4}(name, T, align) declare struct name{1..4} and make_name{1..4}.
#define CUDASIM_VEC1(N, T, A)                                                                        \
    struct alignas(A) N##1 { T x; };                                                                 \
    inline constexpr N##1 make_##N##1(T x) { return N##1{x}; }
#define CUDASIM_VEC2(N, T, A)                                                                        \
    struct alignas(A) N##2 { T x, y; };                                                              \
    inline constexpr N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define CUDASIM_VEC3(N, T)                                                                           \
    struct N##3 { T x, y, z; };                                                                      \
    inline constexpr N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define CUDASIM_VEC4(N, T, A)                                                                        \
    struct alignas(A) N##4 { T x, y, z, w; };                                                        \
    inline constexpr N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }

CUDASIM_VEC1(char, signed char, 1)
CUDASIM_VEC2(char, signed char, 2)
CUDASIM_VEC3(char, signed char)
CUDASIM_VEC4(char, signed char, 4)
CUDASIM_VEC1(uchar, unsigned char, 1)
CUDASIM_VEC2(uchar, unsigned char, 2)
CUDASIM_VEC3(uchar, unsigned char)
CUDASIM_VEC4(uchar, unsigned char, 4)
CUDASIM_VEC1(short, short, 2)
CUDASIM_VEC2(short, short, 4)
CUDASIM_VEC3(short, short)
CUDASIM_VEC4(short, short, 8)
CUDASIM_VEC1(ushort, unsigned short, 2)
CUDASIM_VEC2(ushort, unsigned short, 4)
CUDASIM_VEC3(ushort, unsigned short)
CUDASIM_VEC4(ushort, unsigned short, 8)
CUDASIM_VEC1(int, int, 4)
CUDASIM_VEC2(int, int, 8)
CUDASIM_VEC3(int, int)
CUDASIM_VEC4(int, int, 16)
CUDASIM_VEC1(uint, unsigned int, 4)
CUDASIM_VEC2(uint, unsigned int, 8)
CUDASIM_VEC3(uint, unsigned int)
CUDASIM_VEC4(uint, unsigned int, 16)
CUDASIM_VEC1(longlong, long long, 8)
CUDASIM_VEC2(longlong, long long, 16)
CUDASIM_VEC1(ulonglong, unsigned long long, 8)
CUDASIM_VEC2(ulonglong, unsigned long long, 16)
CUDASIM_VEC1(float, float, 4)
CUDASIM_VEC2(float, float, 8)
CUDASIM_VEC3(float, float)
CUDASIM_VEC4(float, float, 16)
CUDASIM_VEC1(double, double, 8)
CUDASIM_VEC2(double, double, 16)

#undef CUDASIM_VEC1
#undef CUDASIM_VEC2
#undef CUDASIM_VEC3
#undef CUDASIM_VEC4

// dim3: unsigned x, y, z with missing dimensions defaulting to 1, convertible to and from uint3.
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 layout");
static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 layout");
static_assert(sizeof(uint3) == 12 && alignof(uint3) == 4, "uint3 layout");
static_assert(sizeof(int4) == 16 && alignof(int4) == 16, "int4 layout");

#endif  // MDM_CUDASIM_VECTOR_TYPES_H
