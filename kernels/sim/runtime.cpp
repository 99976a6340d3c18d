// cudasim runtime: grid -> workers, CUDA threads -> fibers, barriers, warp collectives, faults.
//
// Execution model (docs/cudasim.md §2):
//   - `workers` OS threads take blocks from an atomic counter; a block runs entirely on one worker.
//   - Every CUDA thread of the block is a fiber with its own mmap'd stack (PROT_NONE guard page below).
//   - Fibers switch only inside blocking calls (barrier, warp collective, mma, ldmatrix). The scheduler
//     runs every ready fiber in thread order (forward or reverse) until it parks or exits, then
//     releases whatever can complete: first warp collectives, then the block barrier. When nothing can,
//     the block is stuck: divergent barrier, mismatched collective or deadlock -> fault.
//   - A fault (also __trap, assert, bad mask, ...) stops the block: its fibers are abandoned, never
//     resumed; the launch stops taking blocks and returns the fault. The process never aborts.
//
// Context switch: a hand-written x86-64 switch (switch_amd64.S, ~20 instructions); ucontext elsewhere.
// AddressSanitizer is told about every stack switch (__sanitizer_{start,finish}_switch_fiber).

#include <assert.h>  // __assert_fail
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capi.h"
#include "cudasim_rt.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(CUDASIM_UCONTEXT)
#define CUDASIM_ASM_SWITCH 1
extern "C" void cudasim_ctx_switch(void** save_sp, void* load_sp);  // switch_amd64.S
extern "C" void cudasim_ctx_entry();                                // switch_amd64.S
#else
#define CUDASIM_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace cudasim::detail {
__thread ThreadState* t_thread;
__thread BlockState* t_block;
}  // namespace cudasim::detail

namespace {

using namespace cudasim::detail;

constexpr int64_t kMaxDynSmem = 227 * 1024;  // sm_90 opt-in per-block limit (232448 bytes); sm_80: 163 KiB
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kDefaultStack = 256 * 1024;  // ASan's redzones make frames larger
#else
constexpr size_t kDefaultStack = 64 * 1024;
#endif

// ---- kernel registry ----------------------------------------------------------------------------------
struct KernelEntry {
    std::string name;
    Thunk fn;
    int nargs;
    const TuInfo* tu;
};
std::vector<KernelEntry>& registry() {
    static std::vector<KernelEntry> r;  // function-local: safe from static initialisation order
    return r;
}
const KernelEntry* find_kernel(const char* name) {
    for (const KernelEntry& k : registry())
        if (k.name == name) return &k;
    return nullptr;
}

// ---- call sites -------------------------------------------------------------------------------------
struct Site {
    const char* file = "";
    const char* func = "";
    unsigned line = 0, col = 0;
};
Site site_of(const std::source_location& l) { return Site{l.file_name(), l.function_name(), l.line(), l.column()}; }
bool same_site(const Site& a, const Site& b) {
    return a.line == b.line && a.col == b.col && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

// ---- fibers, workers, launches ----------------------------------------------------------------------
enum class FState : uint8_t { Ready, Parked, Done };
enum class Wait : uint8_t { None, Barrier, Warp };

struct Worker;

struct Fiber : ThreadState {
    void* sp = nullptr;  // saved stack pointer while switched out (asm switch)
#if !CUDASIM_ASM_SWITCH
    ucontext_t uc;
#endif
    Worker* w = nullptr;
    char* stack_lo = nullptr;
    size_t stack_size = 0;
    uint32_t lin = 0, lane = 0, warp = 0;
    FState state = FState::Done;
    Wait wait = Wait::None;
    // What the fiber waits for (valid while Parked).
    int op = 0;          // WarpOp, or BarrierKind for Wait::Barrier
    unsigned mask = 0;   // warp ops
    int size = 0;        // operand size in bytes
    int b = 0;           // shuffle b operand
    unsigned c = 0;      // shuffle c operand
    int width = 32;
    int num = 0;         // ldmatrix matrices
    bool trans = false;  // ldmatrix .trans
    int pred = 0;        // barrier predicate
    uint64_t val = 0;    // operand bits
    uint64_t res = 0;    // result bits
    const void* p0 = nullptr;  // mma: a; ldmatrix: row address
    const void* p1 = nullptr;  // mma: b
    const void* p2 = nullptr;  // mma: c
    void* out = nullptr;       // mma: d; ldmatrix: r
    Site site;
#if defined(__SANITIZE_ADDRESS__)
    void* fake_stack = nullptr;
#endif
};

struct FaultRec {
    bool set = false;
    std::string kind, kernel, file, msg;
    unsigned line = 0;
    uint3 block{0, 0, 0}, thread{0, 0, 0};
    bool has_thread = false;
    uint64_t block_lin = 0;
};

struct Launch {
    const KernelEntry* k = nullptr;
    void* const* argv = nullptr;
    unsigned gx = 1, gy = 1, gz = 1, bx = 1, by = 1, bz = 1;
    uint64_t nblocks = 0;
    int nthreads = 0;
    size_t dyn = 0;
    bool reverse = false;
    size_t stack = kDefaultStack;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex mu;
    FaultRec first;  // the fault of the lowest block index (deterministic with one worker)

    void report(const FaultRec& f) {
        std::lock_guard<std::mutex> g(mu);
        if (!first.set || f.block_lin < first.block_lin) first = f;
        stop.store(true);
    }
};

struct Worker {
    // Fiber stacks: one mmap'd region, [guard page][stack] per fiber, reused across blocks and launches.
    char* region = nullptr;
    size_t region_bytes = 0, stack_size = 0, stride = 0;
    int nstacks = 0;
    // Per stack: its fiber was abandoned mid-kernel (fault), so ASan's shadow of it may still hold the
    // poisoned redzones of frames that never returned. Unpoisoned before the stack is used again.
    std::vector<uint8_t> stack_dirty;

    std::vector<Fiber> fibers;
    std::vector<uint32_t> live;     // per warp: lanes that exist and have not exited
    std::vector<uint32_t> pending;  // per warp: lanes parked at a warp operation
    int nthreads = 0, nwarps = 0, nlive = 0, nbarrier = 0;

    void* sched_sp = nullptr;
#if !CUDASIM_ASM_SWITCH
    ucontext_t sched_uc;
#endif
#if defined(__SANITIZE_ADDRESS__)
    void* sched_fake = nullptr;
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
#endif
    BlockState block{};
    Launch* L = nullptr;
    Fiber* cur = nullptr;
    bool faulted = false;
    FaultRec fault;
    unsigned char* dyn_buf = nullptr;
    size_t dyn_alloc = 0;

    void unmap() {
        if (!region) return;
#if defined(__SANITIZE_ADDRESS__)
        __asan_unpoison_memory_region(region, region_bytes);  // no stale shadow for a later mapping
#endif
        munmap(region, region_bytes);
        region = nullptr;
    }
    ~Worker() {
        unmap();
        std::free(dyn_buf);
    }
};

__thread Worker* t_worker;

std::string vformat(const char* fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    return buf;
}
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

std::string tid_str(const uint3& t) { return format("(%u,%u,%u)", t.x, t.y, t.z); }

// Source paths as the compiler saw them are relative to kernels/sim (where the generated translation
// units live): "testdata/selftest.cu", "../layernorm.cu". Report them relative to the module root.
std::string module_path(const char* f) {
    std::string s = f ? f : "";
    while (s.rfind("./", 0) == 0) s.erase(0, 2);
    if (s.empty()) return s;
    if (s[0] == '/') {
        const size_t i = s.rfind("/kernels/");
        return i == std::string::npos ? s : s.substr(i + 1);
    }
    std::string base = "kernels/sim";
    while (s.rfind("../", 0) == 0) {
        s.erase(0, 3);
        const size_t slash = base.rfind('/');
        base = slash == std::string::npos ? "" : base.substr(0, slash);
    }
    return base.empty() ? s : base + "/" + s;
}

// Records a fault of the running block (the first one wins) and marks the worker faulted.
void record_fault(Worker* w, const Fiber* f, const char* kind, const char* file, unsigned line, std::string msg) {
    if (w->faulted) return;
    w->faulted = true;
    FaultRec& r = w->fault;
    r.set = true;
    r.kind = kind;
    r.kernel = w->L->k->name;
    r.file = module_path(file);
    r.line = line;
    r.msg = std::move(msg);
    r.block = w->block.bid;
    r.block_lin = w->block.bid.x + uint64_t(w->L->gx) * (w->block.bid.y + uint64_t(w->L->gy) * w->block.bid.z);
    r.has_thread = true;
    r.thread = f ? f->tid : uint3{0, 0, 0};
}

// ---- context switching ------------------------------------------------------------------------------
inline void asan_start(void** fake, const void* bottom, size_t size) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}
inline void asan_finish(void* fake, const void** bottom_old, size_t* size_old) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
    (void)fake, (void)bottom_old, (void)size_old;
#endif
}

// Scheduler -> fiber; returns when the fiber parks, exits or faults.
void resume(Worker* w, Fiber* f) {
    w->cur = f;
    t_thread = f;
#if defined(__SANITIZE_ADDRESS__)
    asan_start(&w->sched_fake, f->stack_lo, f->stack_size);
#endif
#if CUDASIM_ASM_SWITCH
    cudasim_ctx_switch(&w->sched_sp, f->sp);
#else
    swapcontext(&w->sched_uc, &f->uc);
#endif
#if defined(__SANITIZE_ADDRESS__)
    asan_finish(w->sched_fake, nullptr, nullptr);
#endif
    w->cur = nullptr;
    t_thread = nullptr;
}

// Fiber -> scheduler. A dying fiber (exited or faulted) is never switched back to.
void yield_to_scheduler(Fiber* f, bool dying) {
    Worker* w = f->w;
#if defined(__SANITIZE_ADDRESS__)
    asan_start(dying ? nullptr : &f->fake_stack, w->sched_bottom, w->sched_size);
#else
    (void)dying;
#endif
#if CUDASIM_ASM_SWITCH
    cudasim_ctx_switch(&f->sp, w->sched_sp);
#else
    swapcontext(&f->uc, &w->sched_uc);
#endif
#if defined(__SANITIZE_ADDRESS__)
    asan_finish(f->fake_stack, &w->sched_bottom, &w->sched_size);
#endif
}

[[noreturn]] void fiber_die(Fiber* f) {
    yield_to_scheduler(f, true);
    __builtin_trap();  // unreachable: the scheduler never resumes a dead fiber
}

}  // namespace

// First frame of every fiber (called from cudasim_ctx_entry or the ucontext trampoline).
extern "C" [[noreturn]] void cudasim_fiber_main(Fiber* f) {
    Worker* w = f->w;
#if defined(__SANITIZE_ADDRESS__)
    asan_finish(nullptr, &w->sched_bottom, &w->sched_size);
#endif
    w->L->k->fn(w->L->argv);
    f->state = FState::Done;
    w->nlive--;
    w->live[f->warp] &= ~(1u << f->lane);
    fiber_die(f);
}

namespace {

#if !CUDASIM_ASM_SWITCH
void ucontext_entry() { cudasim_fiber_main(static_cast<Fiber*>(t_thread)); }
#endif

// Prepares f to start at cudasim_fiber_main(f) on its own stack.
void init_fiber_context(Fiber* f) {
#if CUDASIM_ASM_SWITCH
    // Frame popped by cudasim_ctx_switch, low to high: r15 r14 r13 r12 rbx rbp ret. After `ret` into
    // cudasim_ctx_entry, rsp = top - 16: 16-byte aligned before its `call`, as the ABI requires.
    // r12 = argument, r13 = function, rbp = 0 ends frame-pointer stack walks (ASan, gdb).
    uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack_lo) + f->stack_size) & ~uintptr_t(15);
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 72);
    sp[0] = 0;                                                  // r15
    sp[1] = 0;                                                  // r14
    sp[2] = reinterpret_cast<uint64_t>(&cudasim_fiber_main);    // r13
    sp[3] = reinterpret_cast<uint64_t>(f);                      // r12
    sp[4] = 0;                                                  // rbx
    sp[5] = 0;                                                  // rbp
    sp[6] = reinterpret_cast<uint64_t>(&cudasim_ctx_entry);     // return address
    sp[7] = 0;
    sp[8] = 0;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, ucontext_entry, 0);
#endif
}

// ---- worker pool and stacks -------------------------------------------------------------------------
std::mutex g_pool_mu;
std::vector<Worker*> g_pool;

bool ensure_stacks(Worker* w, size_t stack, int nthreads, std::string* err) {
    if (w->region && w->stack_size == stack && w->nstacks >= nthreads) return true;
    w->unmap();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t sz = (stack + page - 1) / page * page;
    int n = 256;
    while (n < nthreads) n *= 2;
    const size_t stride = sz + page;
    const size_t bytes = stride * static_cast<size_t>(n);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        *err = format("cannot map %zu bytes of fiber stacks: %s", bytes, std::strerror(errno));
        return false;
    }
    char* base = static_cast<char*>(p);
    for (int i = 0; i < n; i++) mprotect(base + size_t(i) * stride, page, PROT_NONE);  // guard pages
    w->region = base;
    w->region_bytes = bytes;
    w->stack_size = sz;
    w->stride = stride;
    w->nstacks = n;
    w->stack_dirty.assign(size_t(n), 0);
    return true;
}

Worker* acquire_worker(size_t stack, int nthreads, std::string* err) {
    Worker* w = nullptr;
    {
        std::lock_guard<std::mutex> g(g_pool_mu);
        for (size_t i = 0; i < g_pool.size(); i++) {
            if (g_pool[i]->stack_size >= stack && g_pool[i]->stack_size < stack + 65536 && g_pool[i]->nstacks >= nthreads) {
                w = g_pool[i];
                g_pool.erase(g_pool.begin() + long(i));
                break;
            }
        }
        if (!w && !g_pool.empty()) {
            w = g_pool.back();
            g_pool.pop_back();
        }
    }
    if (!w) w = new Worker();
    if (!ensure_stacks(w, stack, nthreads, err)) {
        delete w;
        return nullptr;
    }
    return w;
}

void release_worker(Worker* w) {
    std::lock_guard<std::mutex> g(g_pool_mu);
    if (g_pool.size() < 8)
        g_pool.push_back(w);
    else
        delete w;
}

// ---- shared-memory ranges ---------------------------------------------------------------------------
bool in_range(const void* p, size_t n, const void* lo, const void* hi) {
    auto a = reinterpret_cast<uintptr_t>(p);
    return lo && a >= reinterpret_cast<uintptr_t>(lo) && a + n <= reinterpret_cast<uintptr_t>(hi);
}
bool in_shared(const BlockState& b, const void* p, size_t n) {
    return in_range(p, n, b.dyn, b.dyn + b.dyn_bytes) || in_range(p, n, b.static_lo, b.static_hi);
}

// ---- names for messages -----------------------------------------------------------------------------
const char* op_name(int op) {
    switch (op) {
        case kShflIdx: return "__shfl_sync";
        case kShflUp: return "__shfl_up_sync";
        case kShflDown: return "__shfl_down_sync";
        case kShflXor: return "__shfl_xor_sync";
        case kBallot: return "__ballot_sync";
        case kAny: return "__any_sync";
        case kAll: return "__all_sync";
        case kSyncWarp: return "__syncwarp";
        case kReduceAdd: return "__reduce_add_sync";
        case kReduceMinU: case kReduceMinI: return "__reduce_min_sync";
        case kReduceMaxU: case kReduceMaxI: return "__reduce_max_sync";
        case kReduceAnd: return "__reduce_and_sync";
        case kReduceOr: return "__reduce_or_sync";
        case kReduceXor: return "__reduce_xor_sync";
        case kMatchAny: return "__match_any_sync";
        case kMatchAll: return "__match_all_sync";
        case kMma: return "mma.sync.m16n8k16";
        case kLdmatrix: return "ldmatrix";
    }
    return "?";
}
const char* barrier_name(int kind) {
    switch (kind) {
        case kBarCount: return "__syncthreads_count";
        case kBarAnd: return "__syncthreads_and";
        case kBarOr: return "__syncthreads_or";
    }
    return "__syncthreads";
}
std::string site_str(const Site& s) { return format("%s:%u", module_path(s.file).c_str(), s.line); }
std::string wait_str(const Fiber& f) {
    if (f.wait == Wait::Barrier) return format("%s at %s", barrier_name(f.op), site_str(f.site).c_str());
    if (f.op == kMma || f.op == kLdmatrix)
        return format("%s%s at %s", op_name(f.op),
                      f.op == kLdmatrix ? format(".x%d%s", f.num, f.trans ? ".trans" : "").c_str() : "",
                      site_str(f.site).c_str());
    std::string w = format("%s(mask 0x%08x", op_name(f.op), f.mask);
    if (f.op <= kShflXor) w += format(", width %d", f.width);
    return w + ") at " + site_str(f.site);
}

// Thread ranges "0-15,32,40-47" of the fibers matching pred.
template <class P>
std::string ranges(const Worker* w, P pred) {
    std::string s;
    int start = -1;
    for (int i = 0; i <= w->nthreads; i++) {
        bool in = i < w->nthreads && pred(w->fibers[size_t(i)]);
        if (in && start < 0) start = i;
        if (!in && start >= 0) {
            if (!s.empty()) s += ",";
            s += start == i - 1 ? format("%d", start) : format("%d-%d", start, i - 1);
            start = -1;
        }
    }
    return s;
}

// ---- warp operations --------------------------------------------------------------------------------
bool same_warp_key(const Fiber& a, const Fiber& b) {
    return a.op == b.op && a.mask == b.mask && a.size == b.size && a.width == b.width && a.num == b.num &&
           a.trans == b.trans && same_site(a.site, b.site);
}

uint32_t lo16(uint32_t r) { return r & 0xffffu; }
uint32_t hi16(uint32_t r) { return r >> 16; }
double bf16_bits_to_double(uint32_t h) { return static_cast<double>(std::bit_cast<float>(h << 16)); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA "Matrix Fragments for mma.m16n8k16
// with floating point type"; table in docs/cudasim.md §5; g = lane >> 2, t = lane % 4; low 16 bits hold the lower-indexed element):
//   A (16x16, row): a0 = (g, 2t..2t+1)  a1 = (g+8, 2t..)  a2 = (g, 2t+8..)  a3 = (g+8, 2t+8..)
//   B (16x8, col):  b0 = (k = 2t..2t+1, n = g)  b1 = (k = 2t+8..2t+9, n = g)
//   C, D (16x8):    c0,c1 = (g, 2t..2t+1)  c2,c3 = (g+8, 2t..2t+1)
// D = A*B + C: the 16 products are exact in double; summed in double and rounded once to float.
void complete_mma(Fiber* lanes) {
    double A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        const auto* a = static_cast<const uint32_t*>(lanes[lane].p0);
        const auto* b = static_cast<const uint32_t*>(lanes[lane].p1);
        const auto* c = static_cast<const float*>(lanes[lane].p2);
        A[g][2 * t] = bf16_bits_to_double(lo16(a[0]));
        A[g][2 * t + 1] = bf16_bits_to_double(hi16(a[0]));
        A[g + 8][2 * t] = bf16_bits_to_double(lo16(a[1]));
        A[g + 8][2 * t + 1] = bf16_bits_to_double(hi16(a[1]));
        A[g][2 * t + 8] = bf16_bits_to_double(lo16(a[2]));
        A[g][2 * t + 9] = bf16_bits_to_double(hi16(a[2]));
        A[g + 8][2 * t + 8] = bf16_bits_to_double(lo16(a[3]));
        A[g + 8][2 * t + 9] = bf16_bits_to_double(hi16(a[3]));
        B[2 * t][g] = bf16_bits_to_double(lo16(b[0]));
        B[2 * t + 1][g] = bf16_bits_to_double(hi16(b[0]));
        B[2 * t + 8][g] = bf16_bits_to_double(lo16(b[1]));
        B[2 * t + 9][g] = bf16_bits_to_double(hi16(b[1]));
        C[g][2 * t] = c[0];
        C[g][2 * t + 1] = c[1];
        C[g + 8][2 * t] = c[2];
        C[g + 8][2 * t + 1] = c[3];
    }
    float D[16][8];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            double s = C[i][j];
            for (int k = 0; k < 16; k++) s += A[i][k] * B[k][j];
            D[i][j] = static_cast<float>(s);
        }
    for (int lane = 0; lane < 32; lane++) {  // all of C was read above: d may alias c
        const int g = lane >> 2, t = lane & 3;
        auto* d = static_cast<float*>(lanes[lane].out);
        d[0] = D[g][2 * t];
        d[1] = D[g][2 * t + 1];
        d[2] = D[g + 8][2 * t];
        d[3] = D[g + 8][2 * t + 1];
    }
}

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 (PTX ISA, "ldmatrix"): lane i (< 8*num)
// supplies the address of row i%8 of matrix i/8 (16 bytes, 16-byte aligned, in shared memory). Thread t
// receives in r[j], from matrix j: without .trans the elements (row t/4, cols 2(t%4), 2(t%4)+1); with
// .trans the elements (rows 2(t%4), 2(t%4)+1; col t/4), i.e. the transposed matrix' fragment.
// Returns false after recording a fault.
bool complete_ldmatrix(Worker* w, Fiber* lanes) {
    const int num = lanes[0].num;
    const bool trans = lanes[0].trans;
    const unsigned char* rows[32];
    for (int i = 0; i < 8 * num; i++) {
        rows[i] = static_cast<const unsigned char*>(lanes[i].p0);
        if (reinterpret_cast<uintptr_t>(rows[i]) % 16 != 0) {
            record_fault(w, &lanes[i], "misaligned address", lanes[i].site.file, lanes[i].site.line,
                         format("ldmatrix: lane %d's row address %p is not 16-byte aligned", i, static_cast<const void*>(rows[i])));
            return false;
        }
        if (!in_shared(w->block, rows[i], 16)) {
            record_fault(w, &lanes[i], "bad address", lanes[i].site.file, lanes[i].site.line,
                         format("ldmatrix: lane %d's row address %p is not in the block's shared memory", i,
                                static_cast<const void*>(rows[i])));
            return false;
        }
    }
    uint32_t r[32][4];
    for (int t = 0; t < 32; t++)
        for (int j = 0; j < num; j++) {
            if (!trans) {
                std::memcpy(&r[t][j], rows[j * 8 + t / 4] + 4 * (t % 4), 4);
            } else {
                uint16_t lo, hi;
                std::memcpy(&lo, rows[j * 8 + 2 * (t % 4)] + 2 * (t / 4), 2);
                std::memcpy(&hi, rows[j * 8 + 2 * (t % 4) + 1] + 2 * (t / 4), 2);
                r[t][j] = lo | (uint32_t(hi) << 16);
            }
        }
    for (int t = 0; t < 32; t++) std::memcpy(lanes[t].out, r[t], sizeof(uint32_t) * size_t(num));
    return true;
}

// Computes the results of a complete warp operation for the lanes in `group` (all parked at the same
// site with the same op/mask/width). Returns false after recording a fault.
bool complete_warp_op(Worker* w, unsigned warp, uint32_t group) {
    Fiber* lanes = &w->fibers[size_t(warp) * 32];
    const Fiber& first = lanes[__builtin_ctz(group)];
    const int op = first.op;
    const uint32_t live = w->live[warp];
    switch (op) {
        case kShflIdx:
        case kShflUp:
        case kShflDown:
        case kShflXor:
            // PTX ISA, shfl.sync: segmask = c[12:8], cval = c[4:0], bval = b[4:0];
            //   maxLane = (lane & segmask) | (cval & ~segmask), minLane = lane & segmask
            //   up: j = lane - bval, valid iff j >= maxLane    down: j = lane + bval, valid iff j <= maxLane
            //   bfly: j = lane ^ bval, valid iff j <= maxLane  idx: j = minLane | (bval & ~segmask), j <= maxLane
            // An invalid source gives the lane its own value. A valid source outside the mask is undefined
            // on hardware; here it is a fault, as is reading a lane that has exited or does not exist.
            for (uint32_t m = group; m; m &= m - 1) {
                const int L = __builtin_ctz(m);
                Fiber& f = lanes[L];
                const int bval = f.b & 31, segmask = int(f.c >> 8) & 31, cval = int(f.c) & 31;
                const int maxLane = (L & segmask) | (cval & ~segmask), minLane = L & segmask;
                int j = 0;
                bool valid = false;
                switch (op) {
                    case kShflUp: j = L - bval; valid = j >= maxLane; break;
                    case kShflDown: j = L + bval; valid = j <= maxLane; break;
                    case kShflXor: j = L ^ bval; valid = j <= maxLane; break;
                    default: j = minLane | (bval & ~segmask); valid = j <= maxLane; break;
                }
                if (!valid) {
                    f.res = f.val;
                } else if (!((first.mask >> j) & 1u)) {
                    record_fault(w, &f, "bad shuffle source", f.site.file, f.site.line,
                                 format("%s: lane %d reads lane %d, which is not in the mask 0x%08x (undefined on the GPU)",
                                        op_name(op), L, j, first.mask));
                    return false;
                } else if (!((live >> j) & 1u)) {
                    record_fault(w, &f, "bad shuffle source", f.site.file, f.site.line,
                                 format("%s: lane %d reads lane %d, which has exited or does not exist (undefined on the GPU)",
                                        op_name(op), L, j));
                    return false;
                } else {
                    f.res = lanes[j].val;
                }
            }
            break;
        case kBallot:
        case kAny:
        case kAll: {
            uint32_t bits = 0;
            for (uint32_t m = group; m; m &= m - 1)
                if (lanes[__builtin_ctz(m)].val) bits |= 1u << __builtin_ctz(m);
            const uint64_t r = op == kBallot ? bits : op == kAny ? (bits != 0) : (bits == group);
            for (uint32_t m = group; m; m &= m - 1) lanes[__builtin_ctz(m)].res = r;
            break;
        }
        case kSyncWarp:
            break;
        case kReduceAdd:
        case kReduceMinU:
        case kReduceMinI:
        case kReduceMaxU:
        case kReduceMaxI:
        case kReduceAnd:
        case kReduceOr:
        case kReduceXor: {
            uint32_t acc = static_cast<uint32_t>(first.val);
            bool firstv = true;
            for (uint32_t m = group; m; m &= m - 1) {
                const uint32_t v = static_cast<uint32_t>(lanes[__builtin_ctz(m)].val);
                if (firstv) {
                    acc = v;
                    firstv = false;
                    continue;
                }
                switch (op) {
                    case kReduceAdd: acc += v; break;
                    case kReduceMinU: acc = std::min(acc, v); break;
                    case kReduceMaxU: acc = std::max(acc, v); break;
                    case kReduceMinI: acc = uint32_t(std::min(int32_t(acc), int32_t(v))); break;
                    case kReduceMaxI: acc = uint32_t(std::max(int32_t(acc), int32_t(v))); break;
                    case kReduceAnd: acc &= v; break;
                    case kReduceOr: acc |= v; break;
                    default: acc ^= v; break;
                }
            }
            for (uint32_t m = group; m; m &= m - 1) lanes[__builtin_ctz(m)].res = acc;
            break;
        }
        case kMatchAny:
            for (uint32_t m = group; m; m &= m - 1) {
                Fiber& f = lanes[__builtin_ctz(m)];
                uint32_t same = 0;
                for (uint32_t n = group; n; n &= n - 1)
                    if (lanes[__builtin_ctz(n)].val == f.val) same |= 1u << __builtin_ctz(n);
                f.res = same;
            }
            break;
        case kMatchAll: {
            bool all = true;
            for (uint32_t m = group; m; m &= m - 1) all = all && lanes[__builtin_ctz(m)].val == first.val;
            for (uint32_t m = group; m; m &= m - 1) lanes[__builtin_ctz(m)].res = all ? (uint64_t(group) | (1ull << 32)) : 0;
            break;
        }
        case kMma:
        case kLdmatrix:
            // .aligned: every thread of the warp must execute the same instruction.
            if (group != 0xffffffffu) {
                const int missing = __builtin_ctz(~group);
                record_fault(w, &lanes[__builtin_ctz(group)], "collective mismatch", first.site.file, first.site.line,
                             format("%s needs all 32 lanes of warp %u, but lane %d has exited or does not exist",
                                    op_name(op), warp, missing));
                return false;
            }
            if (op == kMma) {
                complete_mma(lanes);
            } else if (!complete_ldmatrix(w, lanes)) {
                return false;
            }
            break;
    }
    for (uint32_t m = group; m; m &= m - 1) {
        Fiber& f = lanes[__builtin_ctz(m)];
        f.state = FState::Ready;
        f.wait = Wait::None;
    }
    w->pending[warp] &= ~group;
    return true;
}

// The group a parked lane waits for: the live lanes of its mask. Complete when every one of them is
// parked at a warp op with the same key.
bool group_complete(const Worker* w, unsigned warp, const Fiber& f, uint32_t* group) {
    const Fiber* lanes = &w->fibers[size_t(warp) * 32];
    const uint32_t g = f.mask & w->live[warp];
    for (uint32_t m = g; m; m &= m - 1) {
        const Fiber& o = lanes[__builtin_ctz(m)];
        if (o.state != FState::Parked || o.wait != Wait::Warp || !same_warp_key(f, o)) return false;
    }
    *group = g;
    return true;
}

// Releases every complete warp operation. Returns true if any fiber became ready.
bool release_warps(Worker* w) {
    bool progress = false;
    for (int warp = 0; warp < w->nwarps; warp++) {
        uint32_t todo = w->pending[size_t(warp)];
        while (todo) {
            const int L = __builtin_ctz(todo);
            const Fiber& f = w->fibers[size_t(warp) * 32 + size_t(L)];
            uint32_t group;
            if (group_complete(w, unsigned(warp), f, &group)) {
                if (!complete_warp_op(w, unsigned(warp), group)) return progress;
                progress = true;
                todo &= ~group;
            } else {
                todo &= ~(1u << L);
            }
        }
    }
    return progress;
}

// Releases the block barrier if every live fiber waits at it. Divergent sites -> fault.
bool release_barrier(Worker* w) {
    if (w->nbarrier == 0 || w->nbarrier != w->nlive) return false;
    const Fiber* first = nullptr;
    int count = 0;
    for (Fiber& f : w->fibers) {
        if (f.wait != Wait::Barrier) continue;
        if (!first) {
            first = &f;
        } else if (!same_site(first->site, f.site) || first->op != f.op) {
            const Site a = first->site;
            const Site b = f.site;
            const std::string ra = ranges(w, [&](const Fiber& x) { return x.wait == Wait::Barrier && same_site(x.site, a); });
            const std::string rb = ranges(w, [&](const Fiber& x) { return x.wait == Wait::Barrier && same_site(x.site, b); });
            record_fault(w, &f, "divergent __syncthreads", b.file, b.line,
                         format("thread %s waits at %s while thread %s waits at %s (threads %s at the first, %s at the second)",
                                tid_str(f.tid).c_str(), wait_str(f).c_str(), tid_str(first->tid).c_str(),
                                wait_str(*first).c_str(), ra.c_str(), rb.c_str()));
            return false;
        }
        count += f.pred;
    }
    const int kind = first->op;
    const int n = w->nbarrier;
    const uint64_t r = kind == kBarCount ? uint64_t(count) : kind == kBarAnd ? (count == n) : kind == kBarOr ? (count > 0) : 0;
    for (Fiber& f : w->fibers) {
        if (f.wait != Wait::Barrier) continue;
        f.res = r;
        f.wait = Wait::None;
        f.state = FState::Ready;
    }
    w->nbarrier = 0;
    return true;
}

// Nothing can run and nothing can be released: report a mismatched collective or a deadlock.
void diagnose_stuck(Worker* w) {
    for (int warp = 0; warp < w->nwarps; warp++) {
        for (uint32_t todo = w->pending[size_t(warp)]; todo; todo &= todo - 1) {
            const Fiber& f = w->fibers[size_t(warp) * 32 + size_t(__builtin_ctz(todo))];
            const uint32_t g = f.mask & w->live[size_t(warp)];
            bool all_warp = true;
            const Fiber* other = nullptr;
            for (uint32_t m = g; m; m &= m - 1) {
                const Fiber& o = w->fibers[size_t(warp) * 32 + size_t(__builtin_ctz(m))];
                if (o.wait != Wait::Warp) all_warp = false;
                else if (!other && !same_warp_key(f, o)) other = &o;
            }
            if (all_warp && other) {
                record_fault(w, other, "collective mismatch", other->site.file, other->site.line,
                             format("warp %d: lane %u waits in %s but lane %u, named in its mask, waits in %s "
                                    "(lanes must meet at the same call site with the same mask and width)",
                                    warp, f.lane, wait_str(f).c_str(), other->lane, wait_str(*other).c_str()));
                return;
            }
        }
    }
    // Deadlock: list who waits for what, grouped by wait.
    const Fiber* blame = nullptr;
    for (const Fiber& f : w->fibers)
        if (f.state == FState::Parked && f.wait == Wait::Warp) {
            blame = &f;
            break;
        }
    if (!blame)
        for (const Fiber& f : w->fibers)
            if (f.state == FState::Parked) {
                blame = &f;
                break;
            }
    std::string msg = "no thread can make progress:";
    std::vector<const Fiber*> seen;
    for (const Fiber& f : w->fibers) {
        if (f.state != FState::Parked) continue;
        bool dup = false;
        for (const Fiber* s : seen)
            if (s->wait == f.wait && (f.wait == Wait::Barrier ? (s->op == f.op && same_site(s->site, f.site)) : same_warp_key(*s, f)))
                dup = true;
        if (dup) continue;
        seen.push_back(&f);
        const Fiber* key = &f;
        std::string r = ranges(w, [&](const Fiber& x) {
            return x.state == FState::Parked && x.wait == key->wait &&
                   (x.wait == Wait::Barrier ? (x.op == key->op && same_site(x.site, key->site)) : same_warp_key(x, *key));
        });
        if (msg.size() < 1500) msg += format(" threads %s wait in %s;", r.c_str(), wait_str(f).c_str());
    }
    const std::string exited = ranges(w, [](const Fiber& x) { return x.state == FState::Done; });
    if (!exited.empty() && msg.size() < 1700) msg += format(" threads %s have exited;", exited.c_str());
    msg.pop_back();
    record_fault(w, blame, "deadlock", blame ? blame->site.file : "", blame ? blame->site.line : 0, msg);
}

// ---- one block ----------------------------------------------------------------------------------------
void run_block(Worker* w, uint64_t b) {
    Launch* L = w->L;
    w->block.bid = uint3{unsigned(b % L->gx), unsigned((b / L->gx) % L->gy), unsigned(b / (uint64_t(L->gx) * L->gy))};
    // Shared memory is uninitialised on hardware: poison it (0xFF bytes = NaN for f32/f64/bf16).
    if (w->block.dyn_bytes) std::memset(w->block.dyn, 0xff, w->block.dyn_bytes);
    if (w->block.static_hi > w->block.static_lo)
        std::memset(w->block.static_lo, 0xff, size_t(w->block.static_hi - w->block.static_lo));

    const int n = w->nthreads;
    for (int i = 0; i < n; i++) {
        Fiber& f = w->fibers[size_t(i)];
#if defined(__SANITIZE_ADDRESS__)
        if (w->stack_dirty[size_t(i)]) {
            __asan_unpoison_memory_region(f.stack_lo, f.stack_size);
            w->stack_dirty[size_t(i)] = 0;
        }
        f.fake_stack = nullptr;
#endif
        f.state = FState::Ready;
        f.wait = Wait::None;
        init_fiber_context(&f);
    }
    for (int i = 0; i < w->nwarps; i++) {
        const int lanes = std::min(32, n - 32 * i);
        w->live[size_t(i)] = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
        w->pending[size_t(i)] = 0;
    }
    w->nlive = n;
    w->nbarrier = 0;
    w->faulted = false;

    for (;;) {
        if (!L->reverse) {
            for (int i = 0; i < n; i++) {
                Fiber* f = &w->fibers[size_t(i)];
                if (f->state != FState::Ready) continue;
                resume(w, f);
                if (w->faulted) goto done;
            }
        } else {
            for (int i = n - 1; i >= 0; i--) {
                Fiber* f = &w->fibers[size_t(i)];
                if (f->state != FState::Ready) continue;
                resume(w, f);
                if (w->faulted) goto done;
            }
        }
        if (w->nlive == 0) break;
        const bool released = release_warps(w);
        if (w->faulted) break;
        if (released) continue;
        if (release_barrier(w)) continue;
        if (w->faulted) break;
        diagnose_stuck(w);
        break;
    }
done:
#if defined(__SANITIZE_ADDRESS__)
    for (int i = 0; i < n; i++)
        if (w->fibers[size_t(i)].state != FState::Done) w->stack_dirty[size_t(i)] = 1;
#endif
    return;
}

// Runs blocks of L until the grid is exhausted or some worker faulted.
void worker_main(Launch* L, std::string* setup_err) {
    Worker* w = acquire_worker(L->stack, L->nthreads, setup_err);
    if (!w) return;
    t_worker = w;
    w->L = L;
    w->nthreads = L->nthreads;
    w->nwarps = (L->nthreads + 31) / 32;
    w->fibers.resize(size_t(w->nthreads));
    w->live.assign(size_t(w->nwarps), 0);
    w->pending.assign(size_t(w->nwarps), 0);
    for (int i = 0; i < w->nthreads; i++) {
        Fiber& f = w->fibers[size_t(i)];
        f.w = w;
        f.lin = unsigned(i);
        f.lane = unsigned(i) & 31u;
        f.warp = unsigned(i) >> 5;
        f.tid = uint3{unsigned(i) % L->bx, (unsigned(i) / L->bx) % L->by, unsigned(i) / (L->bx * L->by)};
        f.stack_lo = w->region + size_t(i) * w->stride + (w->stride - w->stack_size);
        f.stack_size = w->stack_size;
    }
    // Dynamic shared memory: exactly the requested bytes (ASan sees the end), 128-byte aligned.
    const size_t dyn_alloc = (std::max<size_t>(L->dyn, 1) + 127) / 128 * 128;
    if (w->dyn_alloc < dyn_alloc) {
        std::free(w->dyn_buf);
        w->dyn_buf = static_cast<unsigned char*>(std::aligned_alloc(128, dyn_alloc));
        w->dyn_alloc = w->dyn_buf ? dyn_alloc : 0;
    }
#if defined(__SANITIZE_ADDRESS__)
    if (w->dyn_buf) {
        __asan_unpoison_memory_region(w->dyn_buf, w->dyn_alloc);
        __asan_poison_memory_region(w->dyn_buf + L->dyn, w->dyn_alloc - L->dyn);
    }
#endif
    w->block.bdim = dim3(L->bx, L->by, L->bz);
    w->block.gdim = dim3(L->gx, L->gy, L->gz);
    w->block.dyn = w->dyn_buf;
    w->block.dyn_bytes = L->dyn;
    // This worker's instance of the kernel TU's static __shared__ storage (TLS: per OS thread).
    const bool has_tls = L->k->tu && L->k->tu->tls_lo && L->k->tu->tls_hi;
    w->block.static_lo = has_tls ? L->k->tu->tls_lo() : nullptr;
    w->block.static_hi = has_tls ? L->k->tu->tls_hi() : nullptr;
    if (!(w->block.static_lo && w->block.static_hi >= w->block.static_lo &&
          w->block.static_hi - w->block.static_lo < (64 << 20))) {
        w->block.static_lo = w->block.static_hi = nullptr;  // markers not usable: no poisoning
    }
    t_block = &w->block;

    if (!w->dyn_buf) {
        *setup_err = "cannot allocate dynamic shared memory";
    } else {
        for (;;) {
            if (L->stop.load(std::memory_order_relaxed)) break;
            const uint64_t b = L->next.fetch_add(1);
            if (b >= L->nblocks) break;
            run_block(w, b);
            if (w->faulted) {
                L->report(w->fault);
                break;
            }
        }
    }
#if defined(__SANITIZE_ADDRESS__)
    if (w->dyn_buf) __asan_unpoison_memory_region(w->dyn_buf, w->dyn_alloc);
#endif
    t_block = nullptr;
    t_worker = nullptr;
    w->L = nullptr;
    release_worker(w);
}

void copy_str(char* dst, size_t cap, const std::string& s) {
    std::snprintf(dst, cap, "%s", s.c_str());
}

void fill_fault(cudasim_fault* out, const FaultRec& f) {
    std::memset(out, 0, sizeof *out);
    copy_str(out->kind, sizeof out->kind, f.kind);
    copy_str(out->kernel, sizeof out->kernel, f.kernel);
    copy_str(out->file, sizeof out->file, f.file);
    copy_str(out->msg, sizeof out->msg, f.msg);
    out->line = int32_t(f.line);
    out->has_thread = f.has_thread;
    out->block[0] = int32_t(f.block.x);
    out->block[1] = int32_t(f.block.y);
    out->block[2] = int32_t(f.block.z);
    out->thread[0] = int32_t(f.thread.x);
    out->thread[1] = int32_t(f.thread.y);
    out->thread[2] = int32_t(f.thread.z);
}

int launch_error(cudasim_fault* out, const char* kernel, std::string msg) {
    FaultRec f;
    f.set = true;
    f.kind = "invalid launch";
    f.kernel = kernel ? kernel : "";
    f.msg = std::move(msg);
    fill_fault(out, f);
    return 1;
}

int run_launch(const KernelEntry* k, int64_t gx, int64_t gy, int64_t gz, int64_t bx, int64_t by, int64_t bz,
               int64_t dyn, const uint64_t* args, int32_t nargs, const cudasim_options* opt, cudasim_fault* out) {
    const char* name = k->name.c_str();
    if (bx < 1 || by < 1 || bz < 1 || bx * by * bz > 1024 || bx > 1024 || by > 1024 || bz > 64)
        return launch_error(out, name, format("block (%" PRId64 ",%" PRId64 ",%" PRId64 ") is invalid: need 1..1024 threads, x,y <= 1024, z <= 64", bx, by, bz));
    if (gx < 1 || gy < 1 || gz < 1 || gx > 0x7fffffff || gy > 65535 || gz > 65535)
        return launch_error(out, name, format("grid (%" PRId64 ",%" PRId64 ",%" PRId64 ") is invalid: need x in 1..2^31-1, y and z in 1..65535", gx, gy, gz));
    if (dyn < 0 || dyn > kMaxDynSmem)
        return launch_error(out, name, format("dynamic shared memory of %" PRId64 " bytes exceeds the per-block limit of 227 KiB (%" PRId64 " bytes, sm_90)", dyn, kMaxDynSmem));
    if (nargs != k->nargs)
        return launch_error(out, name, format("kernel takes %d arguments, got %d", k->nargs, nargs));
    Launch L;
    L.k = k;
    std::vector<uint64_t> holders(args, args + nargs);  // 8-byte holders, one per parameter
    std::vector<void*> argv(size_t(nargs) + 1, nullptr);
    for (int i = 0; i < nargs; i++) argv[size_t(i)] = &holders[size_t(i)];
    L.argv = argv.data();
    L.gx = unsigned(gx), L.gy = unsigned(gy), L.gz = unsigned(gz);
    L.bx = unsigned(bx), L.by = unsigned(by), L.bz = unsigned(bz);
    L.nblocks = uint64_t(gx) * uint64_t(gy) * uint64_t(gz);
    L.nthreads = int(bx * by * bz);
    L.dyn = size_t(dyn);
    L.reverse = opt && opt->reverse;
    L.stack = opt && opt->stack_bytes > 0 ? size_t(opt->stack_bytes) : kDefaultStack;
    if (L.stack < 16384) L.stack = 16384;
    int workers = opt && opt->workers > 0 ? opt->workers : 1;
    workers = int(std::min<uint64_t>(uint64_t(std::min(workers, 256)), L.nblocks));

    std::vector<std::string> errs(static_cast<size_t>(workers));
    std::vector<std::thread> threads;
    for (int i = 1; i < workers; i++) {
        try {
            threads.emplace_back(worker_main, &L, &errs[size_t(i)]);
        } catch (const std::exception&) {
            break;  // fewer workers: still correct
        }
    }
    worker_main(&L, &errs[0]);
    for (std::thread& t : threads) t.join();
    if (L.first.set) {
        fill_fault(out, L.first);
        return 1;
    }
    for (const std::string& e : errs)
        if (!e.empty()) return launch_error(out, name, e);
    if (L.next.load() < L.nblocks && !L.stop.load()) return launch_error(out, name, "not every block ran");
    return 0;
}

// Current fiber, or null when called outside a simulated kernel.
Fiber* current_fiber() {
    Worker* w = t_worker;
    return w ? w->cur : nullptr;
}

[[noreturn]] void host_misuse(const char* what) {
    std::fprintf(stderr, "cudasim: %s called outside a simulated kernel\n", what);
    std::abort();
}

// Parks the calling fiber until the scheduler completes what it waits for.
void park(Fiber* f) {
    f->state = FState::Parked;
    yield_to_scheduler(f, false);
}

Fiber* warp_arrive(int op, unsigned mask, const std::source_location& loc) {
    Fiber* f = current_fiber();
    if (!f) host_misuse(op_name(op));
    if (!((mask >> f->lane) & 1u))
        fault("lane not in mask", loc.file_name(), loc.line(),
              "%s with mask 0x%08x called by lane %u, which is not in the mask (undefined on the GPU)", op_name(op),
              mask, f->lane);
    f->wait = Wait::Warp;
    f->op = op;
    f->mask = mask;
    f->size = 0;
    f->b = 0;
    f->c = 0;
    f->width = 32;
    f->num = 0;
    f->trans = false;
    f->site = site_of(loc);
    f->w->pending[f->warp] |= 1u << f->lane;
    return f;
}

}  // namespace

// ---- entry points used by kernels (cudasim_rt.h) ---------------------------------------------------------
namespace cudasim::detail {

void register_kernel(const char* name, Thunk fn, int nargs, const TuInfo* tu) {
    if (find_kernel(name)) return;  // duplicates are link errors already (extern "C")
    registry().push_back(KernelEntry{name, fn, nargs, tu});
}

int block_barrier(int kind, int pred, const std::source_location& loc) {
    Fiber* f = current_fiber();
    if (!f) host_misuse("__syncthreads");
    f->wait = Wait::Barrier;
    f->op = kind;
    f->pred = pred;
    f->site = site_of(loc);
    f->w->nbarrier++;
    park(f);
    return int(f->res);
}

uint64_t warp_collective(int op, unsigned mask, uint64_t value, int size, int b, unsigned c, int width,
                         const std::source_location& loc) {
    Fiber* f = warp_arrive(op, mask, loc);
    if (op <= kShflXor && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
        f->w->pending[f->warp] &= ~(1u << f->lane);
        fault("invalid argument", loc.file_name(), loc.line(), "%s: width %d is not a power of two in 1..32",
              op_name(op), width);
    }
    f->size = size;
    f->val = value;
    f->b = b;
    f->c = c;
    f->width = width;
    park(f);
    return f->res;
}

void warp_mma_m16n8k16_bf16(float* d, const uint32_t* a, const uint32_t* b, const float* c,
                            const std::source_location& loc) {
    Fiber* f = warp_arrive(kMma, 0xffffffffu, loc);
    f->p0 = a;
    f->p1 = b;
    f->p2 = c;
    f->out = d;
    park(f);
}

void warp_ldmatrix(uint32_t* r, int num, bool trans, const void* row_ptr, const std::source_location& loc) {
    Fiber* f = warp_arrive(kLdmatrix, 0xffffffffu, loc);
    f->num = num;
    f->trans = trans;
    f->p0 = row_ptr;
    f->out = r;
    park(f);
}

void cp_async(void* smem, const void* gmem, int bytes, const std::source_location& loc) {
    Fiber* f = current_fiber();
    if (!f) host_misuse("cp.async");
    if (reinterpret_cast<uintptr_t>(smem) % unsigned(bytes) || reinterpret_cast<uintptr_t>(gmem) % unsigned(bytes))
        fault("misaligned address", loc.file_name(), loc.line(), "cp.async of %d bytes: %p -> %p is not %d-byte aligned",
              bytes, gmem, smem, bytes);
    if (!in_shared(f->w->block, smem, size_t(bytes)))
        fault("bad address", loc.file_name(), loc.line(),
              "cp.async destination %p is not in the block's shared memory", smem);
    std::memcpy(smem, gmem, size_t(bytes));
}

void fault(const char* kind, const char* file, unsigned line, const char* fmt, ...) {
    Fiber* f = current_fiber();
    va_list ap;
    va_start(ap, fmt);
    std::string msg = vformat(fmt, ap);
    va_end(ap);
    if (!f) {
        std::fprintf(stderr, "cudasim: %s at %s:%u outside a simulated kernel: %s\n", kind, file, line, msg.c_str());
        std::abort();
    }
    record_fault(f->w, f, kind, file, line, std::move(msg));
    fiber_die(f);
}

void trap(const std::source_location& loc) { fault("trap", loc.file_name(), loc.line(), "__trap() called"); }

void misaligned(const char* what, const void* p, size_t align, const std::source_location& loc) {
    fault("misaligned address", loc.file_name(), loc.line(), "%s on %p, which is not %zu-byte aligned", what, p, align);
}

}  // namespace cudasim::detail

extern "C" void cudasim_assert_fail(const char* expr, const char* file, unsigned line, const char* func) {
    if (!current_fiber()) __assert_fail(expr, file, line, func);
    cudasim::detail::fault("assert", file, line, "assertion `%s` failed in %s", expr, func);
}

// ---- C API (capi.h) -----------------------------------------------------------------------------------
extern "C" {

int cudasim_kernel_count(void) { return int(registry().size()); }

const char* cudasim_kernel_name(int i) {
    if (i < 0 || size_t(i) >= registry().size()) return nullptr;
    return registry()[size_t(i)].name.c_str();
}

int cudasim_kernel_nargs(const char* name) {
    const KernelEntry* k = find_kernel(name);
    return k ? k->nargs : -1;
}

const char* cudasim_kernel_family(const char* name) {
    const KernelEntry* k = find_kernel(name);
    return k && k->tu ? k->tu->family : nullptr;
}

int cudasim_launch(const char* name, int64_t gx, int64_t gy, int64_t gz, int64_t bx, int64_t by, int64_t bz,
                   int64_t dyn_smem, const uint64_t* args, int32_t nargs, const cudasim_options* opt,
                   cudasim_fault* fault) {
    const KernelEntry* k = find_kernel(name);
    if (!k) return launch_error(fault, name, format("unknown kernel %s", name));
    return run_launch(k, gx, gy, gz, bx, by, bz, dyn_smem, args, nargs, opt, fault);
}

int64_t cudasim_max_dynamic_smem(void) { return kMaxDynSmem; }
int64_t cudasim_default_stack_bytes(void) { return int64_t(kDefaultStack); }

uintptr_t cudasim_alloc(size_t bytes) {
    void* p = nullptr;
    if (posix_memalign(&p, 256, bytes) != 0) return 0;
    return reinterpret_cast<uintptr_t>(p);
}
void cudasim_free(uintptr_t p) { std::free(reinterpret_cast<void*>(p)); }
void cudasim_copy_in(uintptr_t dst, const void* src, size_t n) { std::memcpy(reinterpret_cast<void*>(dst), src, n); }
void cudasim_copy_out(void* dst, uintptr_t src, size_t n) { std::memcpy(dst, reinterpret_cast<const void*>(src), n); }
void cudasim_memset(uintptr_t dst, int b, size_t n) { std::memset(reinterpret_cast<void*>(dst), b, n); }

double cudasim_switch_ns(int64_t iters) {
    // One thread calling __syncthreads `iters` times: each call is a switch to the scheduler, a barrier
    // release and a switch back, i.e. 2 context switches plus the scheduler's bookkeeping.
    static thread_local int64_t s_iters;  // the bench kernel runs on this thread (one worker)
    s_iters = iters;
    static const TuInfo tu{"internal", nullptr, nullptr};
    KernelEntry k{"cudasim_switch_bench",
                  [](void* const*) {
                      for (int64_t i = 0; i < s_iters; i++) block_barrier(kBarPlain, 0, std::source_location::current());
                  },
                  0, &tu};
    cudasim_options opt{0, 1, 0};
    cudasim_fault f;
    const auto t0 = std::chrono::steady_clock::now();
    if (run_launch(&k, 1, 1, 1, 1, 1, 1, 0, nullptr, 0, &opt, &f) != 0) return -1;
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / double(2 * iters);
}

}  // extern "C"
