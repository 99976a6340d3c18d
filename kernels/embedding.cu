// embedding.cu: token embedding, forward (row gather) and backward (deterministic scatter-add).
//
// Math:   fwd  Out[n, :] = Table[IDs[n], :]
//         bwd  DTable[v, :] += sum over n with IDs[n] = v of DOut[n, :]   (in increasing n, in f32)
// Shapes: Table/DTable [R, D] (R = V+1 rows, row V embeds the mask), IDs [N] i32, Out/DOut [N, D];
//         row-major, contiguous. D may be anything (1, 33, 97, 768, ...).
// Dtypes: fwd: Table and Out f32 or bf16 (same dtype; a bit copy). bwd: DOut f32 or bf16, DTable f32,
//         sums in f32. F64 is CPU-only.
// Saved:  nothing.
// Errors: an id outside [0, R) lowers the device flag err[0] (common.cuh, FLAG_NONE) to the smallest bad
//         index; the launcher reads it back and returns an ops.ErrValue naming the id and its index. In
//         the backward every kernel after the first returns at once when the flag is set, so DTable is
//         left untouched on error.
//
// Backward, deterministic without float atomics (pitfalls B14). Rows with the same id must be summed in
// one fixed order, and one id may own a large share of the rows (the mask id V holds ~half of a batch),
// so neither "one thread per column walks all rows" (D-way parallel only, N-long dependent chains) nor
// "one worker per id" (skewed) is fast. Instead:
//   1. sort the (id, n) pairs by id with an LSD radix sort on 8-bit digits, ceil(bits(R-1)/8) passes
//      (1 for R <= 256, 2 for R <= 65536), each pass three kernels:
//        embedding_bwd_i32_hist     per-block digit histograms hist[digit * nblk + block] (block of
//                                   SORT_THREADS keys; pass 0 also checks the ids and sets the flag)
//        embedding_bwd_i32_scan     one block: exclusive scan of hist in (digit, block) order
//        embedding_bwd_i32_scatter  stable scatter: rank = offset of (digit, block) + count of the same
//                                   digit in earlier warps of the block + rank among equal lanes of the
//                                   warp (__match_any_sync). Integer work only: the sorted output is unique.
//      Stability makes the final order (id, n) ascending: n ascends within each id.
//   2. embedding_bwd_<dt>_chunk: the sorted list is cut into chunks of EMB_CHUNK = 32 entries; one warp per
//      (chunk, column tile) sums each run of equal ids in order. A run that starts and ends inside its
//      chunk is added to DTable directly (no other warp touches that row); a run cut by a chunk boundary
//      is written to partial[chunk][0] (the chunk's first run, continuing an earlier chunk) or
//      partial[chunk][1] (its last run, continuing into the next chunk).
//   3. embedding_bwd_f32_combine: one warp per (chunk, column tile) whose last run starts a cut bucket
//      (the "owner") adds partial[k][1] + partial[k+1][0] + ... in chunk order and adds that to DTable.
//   So every DTable row receives DTable + ((run sums in chunk order)), each run summed in n order: fixed
//   for a given input, whatever the thread or block order (the simulator checks forward, reverse and
//   2-worker runs). Work: read DOut once, ~N/16 partial rows, plus the sort (~6 light kernels on N ints).
//
// Launch contract (mirrored in cuda/embedding.go):
//   embedding_fwd_<dt>            grid ceil(N / ROW_WARPS), block ROW_THREADS (256): one warp per row.
//   embedding_bwd_i32_hist        grid nblk = ceil(N / SORT_THREADS), block SORT_THREADS (256), static smem 1 KiB.
//   embedding_bwd_i32_scan        grid 1, block SCAN_THREADS (1024), static smem 16 KiB.
//   embedding_bwd_i32_scatter     grid nblk, block SORT_THREADS, static smem 8 KiB.
//   embedding_bwd_<dt>_chunk      grid ceil(nchunks * tiles / 8), block 256 (8 warps, one (chunk, tile) each);
//   embedding_bwd_f32_combine     same grid;  nchunks = ceil(N / 32), tiles = ceil(D / (32 * V)), V = 4 (f32
//                                 DOut) or 8 (bf16 DOut) columns per lane.
//   No dynamic shared memory. Scratch (launcher): err[1], two key and two value buffers [N] i32,
//   hist [256 * nblk] i32, partial [nchunks, 2, D] f32.
// Go launcher: cuda/embedding.go (Backend.EmbedFwd, Backend.EmbedBwd).
//
// Bandwidth (expected, H200): fwd is a copy, one 16-byte load and store per lane: ~85-90% of HBM
// bandwidth for D·size >= 512 bytes (16 B rows, as in the V = 50257, D = 16 test case, waste most lanes).
// bwd: the chunk pass reads DOut once (gathered rows, 16-byte per lane) and writes DTable rows once per
// run; the sort adds ~10 µs of launch-bound work for N = 65536. Expect ~60-75% of bandwidth for the
// chunk pass and a total of a few tens of µs per call at N = 65536, D = 768 (to be measured).
//
// Lab history: v1 (this file).
#include "common.cuh"

namespace mdm {

constexpr int SORT_THREADS = 256;  // keys per sort block (one per thread); mirrored in Go
constexpr int SORT_WARPS = SORT_THREADS / 32;
constexpr int SCAN_THREADS = 1024;
constexpr int SCAN_ITEMS = 4;                           // entries per thread and tile
constexpr int SCAN_TILE = SCAN_THREADS * SCAN_ITEMS;    // 16 KiB of shared memory
constexpr int EMB_CHUNK = 32;  // sorted entries per chunk = one per lane
constexpr int EMB_WARPS = 8;   // (chunk, tile) items per block of the chunk/combine kernels

// ---- forward ----------------------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ void emb_fwd(T* out, const T* table, const int* ids, int* err, long long n, long long rows,
                                        long long d) {
    gather_rows_warp<T>(out, table, ids, err, n, rows, d);
}

// ---- backward: radix sort of (id, n) ----------------------------------------------------------------------

// keys_in: pass 0 = IDs (checked against [0, rows)); later passes = the previous pass's sorted keys.
__device__ __forceinline__ void emb_sort_hist(const int* keys_in, int* hist, int* err, long long n, long long rows,
                                              int shift, int check) {
    __shared__ int h[256];
    if (!check && err[0] != FLAG_NONE) return;
    const int tid = threadIdx.x;
    h[tid] = 0;  // SORT_THREADS == 256 == number of digits
    __syncthreads();
    const long long i = static_cast<long long>(blockIdx.x) * SORT_THREADS + tid;
    if (i < n) {
        const int key = keys_in[i];
        if (check && (key < 0 || key >= rows)) {
            atomicMin(err, static_cast<int>(i));
        } else {
            atomicAdd(&h[(key >> shift) & 255], 1);  // integer counts: order-independent
        }
    }
    __syncthreads();
    hist[static_cast<long long>(tid) * gridDim.x + blockIdx.x] = h[tid];
}

// Exclusive scan of hist[0 .. total) in place by one block of SCAN_THREADS threads, in tiles of SCAN_TILE
// entries staged through shared memory (coalesced loads and stores): thread t scans entries [4t, 4t + 4) of
// the tile, block_exclusive_scan adds the threads' sums, and a carry chains the tiles.
__device__ __forceinline__ void emb_sort_scan(int* hist, const int* err, long long total) {
    __shared__ int tile[SCAN_TILE];
    __shared__ int scratch[32];
    if (err[0] != FLAG_NONE) return;
    const int tid = threadIdx.x;
    int carry = 0;
    for (long long base = 0; base < total; base += SCAN_TILE) {
        for (int k = tid; k < SCAN_TILE; k += SCAN_THREADS) tile[k] = base + k < total ? hist[base + k] : 0;
        __syncthreads();
        int v[SCAN_ITEMS], s = 0;
#pragma unroll
        for (int j = 0; j < SCAN_ITEMS; j++) {
            v[j] = tile[tid * SCAN_ITEMS + j];
            s += v[j];
        }
        int tot;
        int run = carry + block_exclusive_scan(s, scratch, &tot);
#pragma unroll
        for (int j = 0; j < SCAN_ITEMS; j++) {
            tile[tid * SCAN_ITEMS + j] = run;
            run += v[j];
        }
        __syncthreads();
        for (int k = tid; k < SCAN_TILE; k += SCAN_THREADS)
            if (base + k < total) hist[base + k] = tile[k];
        carry += tot;
        __syncthreads();  // the next tile overwrites `tile`
    }
}

// Stable scatter of one pass. vals_in == nullptr means the identity (pass 0: value = index).
__device__ __forceinline__ void emb_sort_scatter(const int* keys_in, const int* vals_in, int* keys_out, int* vals_out,
                                                 const int* hist, const int* err, long long n, int shift) {
    __shared__ int wcnt[SORT_WARPS][256];
    if (err[0] != FLAG_NONE) return;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int k = tid; k < SORT_WARPS * 256; k += SORT_THREADS) wcnt[k / 256][k % 256] = 0;
    __syncthreads();
    const long long i = static_cast<long long>(blockIdx.x) * SORT_THREADS + tid;
    const bool live = i < n;
    const int key = live ? keys_in[i] : 0;
    const int val = live ? (vals_in ? vals_in[i] : static_cast<int>(i)) : 0;
    const int digit = live ? (key >> shift) & 255 : 256;  // 256: matches no live lane
    const unsigned peers = __match_any_sync(0xffffffffu, digit);
    const unsigned below = peers & ((1u << lane) - 1u);
    const int rank = __popc(below);
    if (live && below == 0) wcnt[warp][digit] = __popc(peers);  // the lowest lane of each digit group
    __syncthreads();
    if (live) {
        int pos = hist[static_cast<long long>(digit) * gridDim.x + blockIdx.x] + rank;
        for (int w = 0; w < warp; w++) pos += wcnt[w][digit];
        keys_out[pos] = key;
        vals_out[pos] = val;
    }
}

// ---- backward: chunked, ordered sums over the sorted rows ------------------------------------------------

// One warp per (chunk k, column tile t): item = blockIdx.x * EMB_WARPS + warp, k = item / tiles.
template <class T>
__device__ __forceinline__ void emb_bwd_chunk(const int* skeys, const int* svals, const T* dout, float* dtable,
                                              float* part, const int* err, long long n, long long d) {
    if (err[0] != FLAG_NONE) return;
    constexpr int V = VecOf<T>::N;
    const int lane = threadIdx.x & 31;
    const long long tiles = (d + 32 * V - 1) / (32 * V);
    const long long item = static_cast<long long>(blockIdx.x) * EMB_WARPS + (threadIdx.x >> 5);
    const long long k = item / tiles, t = item % tiles;
    const long long s0 = k * EMB_CHUNK;
    if (s0 >= n) return;  // whole warp
    const int cnt = n - s0 < EMB_CHUNK ? static_cast<int>(n - s0) : EMB_CHUNK;
    const int myKey = lane < cnt ? skeys[s0 + lane] : -1;
    const int myRow = lane < cnt ? svals[s0 + lane] : 0;
    const int prevKey = s0 > 0 ? skeys[s0 - 1] : -1;
    const int nextKey = s0 + cnt < n ? skeys[s0 + cnt] : -1;
    const int upKey = __shfl_up_sync(0xffffffffu, myKey, 1);
    // bit q set: entry q starts a run
    const unsigned starts = __ballot_sync(0xffffffffu, lane < cnt && (lane == 0 || myKey != upKey));
    const long long c0 = (t * 32 + lane) * V;
    const long long valid = d - c0;  // <= 0: this lane holds no column of the tile
    const bool vec = (d % V == 0) && aligned16(dout) && aligned16(dtable) && aligned16(part);
    int q = 0;
    while (q < cnt) {
        // run [q, e): e = next start after q, or cnt
        const unsigned later = starts & ~((2u << q) - 1u);
        const int e = later ? __ffs(later) - 1 : cnt;
        const int id = __shfl_sync(0xffffffffu, myKey, q);
        float acc[V];
#pragma unroll
        for (int x = 0; x < V; x++) acc[x] = 0.0f;
        for (int r = q; r < e; r++) {
            const long long row = __shfl_sync(0xffffffffu, myRow, r);
            if (valid > 0) {
                float v[V];
                load_pack_any<V>(dout + row * d + c0, valid, vec, v);
#pragma unroll
                for (int x = 0; x < V; x++) acc[x] += v[x];
            }
        }
        const bool head = q == 0 && id == prevKey;
        const bool tail = e == cnt && id == nextKey;
        if (valid > 0) {
            if (!head && !tail) {
                float* dst = dtable + static_cast<long long>(id) * d + c0;
                float cur[V];
                load_pack_any<V>(dst, valid, vec, cur);
#pragma unroll
                for (int x = 0; x < V; x++) cur[x] += acc[x];
                store_pack_any<V>(dst, valid, vec, cur);
            } else {
                store_pack_any<V>(part + (k * 2 + (head ? 0 : 1)) * d + c0, valid, vec, acc);
            }
        }
        q = e;
    }
}

// One warp per (chunk k, column tile t), as emb_bwd_chunk. The owner of a cut bucket (the chunk holding the
// bucket's first entries) adds the bucket's partials in chunk order and adds the total to DTable.
__device__ __forceinline__ void emb_bwd_combine(const int* skeys, float* dtable, const float* part, const int* err,
                                                long long n, long long d, int v) {
    if (err[0] != FLAG_NONE) return;
    const int lane = threadIdx.x & 31;
    const long long tiles = (d + 32 * v - 1) / (32 * v);
    const long long item = static_cast<long long>(blockIdx.x) * EMB_WARPS + (threadIdx.x >> 5);
    const long long k = item / tiles, t = item % tiles;
    const long long s0 = k * EMB_CHUNK;
    if (s0 >= n) return;
    const long long s1 = s0 + EMB_CHUNK < n ? s0 + EMB_CHUNK : n;
    const int id = skeys[s1 - 1];
    if (s1 >= n || skeys[s1] != id) return;                      // the last run ends in this chunk
    if (skeys[s0] == id && s0 > 0 && skeys[s0 - 1] == id) return;  // ... or began in an earlier chunk
    const long long c0 = (t * 32 + lane) * v;
    const long long valid = d - c0;
    if (valid <= 0) return;  // no collectives below: lanes may leave
    const bool vec = (d % v == 0) && aligned16(dtable) && aligned16(part);
    // v is 4 or 8 (the DOut pack width); handle both with packs of 4 floats.
    for (int h = 0; h < v; h += 4) {
        const long long ch = valid - h;
        if (ch <= 0) break;
        float acc[4];
        load_pack_any<4>(part + (k * 2 + 1) * d + c0 + h, ch, vec, acc);
        for (long long kk = k + 1;; kk++) {
            float x[4];
            load_pack_any<4>(part + (kk * 2 + 0) * d + c0 + h, ch, vec, x);
#pragma unroll
            for (int e = 0; e < 4; e++) acc[e] += x[e];
            const long long e0 = kk * EMB_CHUNK;
            const long long e1 = e0 + EMB_CHUNK < n ? e0 + EMB_CHUNK : n;
            // chunk kk continues the bucket into kk+1 only if it holds nothing else and the next entry matches
            if (!(skeys[e1 - 1] == id && e1 < n && skeys[e1] == id)) break;
        }
        float* dst = dtable + static_cast<long long>(id) * d + c0 + h;
        float cur[4];
        load_pack_any<4>(dst, ch, vec, cur);
#pragma unroll
        for (int e = 0; e < 4; e++) cur[e] += acc[e];
        store_pack_any<4>(dst, ch, vec, cur);
    }
}

}  // namespace mdm

// ---- entry points -------------------------------------------------------------------------------------------

KERNEL void __launch_bounds__(256) embedding_fwd_f32(float* out, const float* table, const int* ids, int* err,
                                                     long long n, long long rows, long long d) {
    mdm::emb_fwd<float>(out, table, ids, err, n, rows, d);
}
KERNEL void __launch_bounds__(256) embedding_fwd_bf16(__nv_bfloat16* out, const __nv_bfloat16* table, const int* ids,
                                                      int* err, long long n, long long rows, long long d) {
    mdm::emb_fwd<__nv_bfloat16>(out, table, ids, err, n, rows, d);
}

KERNEL void __launch_bounds__(256) embedding_bwd_i32_hist(const int* keys_in, int* hist, int* err, long long n,
                                                          long long rows, int shift, int check) {
    mdm::emb_sort_hist(keys_in, hist, err, n, rows, shift, check);
}
KERNEL void __launch_bounds__(1024) embedding_bwd_i32_scan(int* hist, const int* err, long long total) {
    mdm::emb_sort_scan(hist, err, total);
}
KERNEL void __launch_bounds__(256) embedding_bwd_i32_scatter(const int* keys_in, const int* vals_in, int* keys_out,
                                                             int* vals_out, const int* hist, const int* err, long long n,
                                                             int shift) {
    mdm::emb_sort_scatter(keys_in, vals_in, keys_out, vals_out, hist, err, n, shift);
}

KERNEL void __launch_bounds__(256) embedding_bwd_f32_chunk(const int* skeys, const int* svals, const float* dout,
                                                           float* dtable, float* part, const int* err, long long n,
                                                           long long d) {
    mdm::emb_bwd_chunk<float>(skeys, svals, dout, dtable, part, err, n, d);
}
KERNEL void __launch_bounds__(256) embedding_bwd_bf16_chunk(const int* skeys, const int* svals,
                                                            const __nv_bfloat16* dout, float* dtable, float* part,
                                                            const int* err, long long n, long long d) {
    mdm::emb_bwd_chunk<__nv_bfloat16>(skeys, svals, dout, dtable, part, err, n, d);
}
// v: columns per lane of the chunk kernel that wrote `part` (4 for f32 DOut, 8 for bf16 DOut).
KERNEL void __launch_bounds__(256) embedding_bwd_f32_combine(const int* skeys, float* dtable, const float* part,
                                                             const int* err, long long n, long long d, int v) {
    mdm::emb_bwd_combine(skeys, dtable, part, err, n, d, v);
}
