package cuda

import (
	"errors"
	"fmt"
	"sort"
)

// blockSource is where the caching allocator gets device memory from: the driver of a real
// device (through its worker goroutine), or a fake in tests.
type blockSource interface {
	memAlloc(n int64) (Ptr, error) // wraps errDriverOOM when the device is out of memory
	memFree(p Ptr) error
	memInfo() (free, total int64, err error)
	sync() error // waits for all work issued so far (before memory is returned to the driver)
}

// AllocStats describes a caching allocator's memory.
type AllocStats struct {
	InUse    int64 // bytes in live allocations (rounded to their size class)
	Cached   int64 // bytes held in free lists, ready for reuse
	Peak     int64 // largest InUse seen
	Reserved int64 // InUse + Cached: bytes obtained from the driver
	Allocs   int64 // Alloc calls
	Hits     int64 // Alloc calls served from a free list
	Releases int64 // times the cache was emptied (on an OOM retry or EmptyCache)
}

// cachingAllocator serves Alloc from per-size-class free lists and returns freed blocks to
// them instead of the driver (cuMemAlloc and cuMemFree cost tens of µs and cuMemFree
// synchronises the device). Blocks are reused in stream order: the device has one stream,
// so work issued after a Free that reuses the block runs after the work that used it.
//
// Size classes (allocClass): 512 bytes at least (keeps 256-byte alignment); up to 2 KiB,
// multiples of 512; then four classes per power of two (2^k·{1, 1.25, 1.5, 1.75}: at most
// 25% rounding waste); above 64 MiB, multiples of 2 MiB, and a cached block up to 1/8
// larger than the request may be reused. On out-of-memory, the cache is released to the
// driver and the allocation retried once; if it still fails the error is an *OOMError with
// the requested and the free bytes, and the allocator keeps working once memory is freed.
//
// Not safe for concurrent use: the real device calls it under its mutex.
type cachingAllocator struct {
	src    blockSource
	device string
	free   map[int64][]Ptr // class size → cached blocks
	live   map[Ptr]int64   // live block → class size
	stats  AllocStats
}

func newCachingAllocator(src blockSource, device string) *cachingAllocator {
	return &cachingAllocator{src: src, device: device, free: map[int64][]Ptr{}, live: map[Ptr]int64{}}
}

const (
	allocMinClass   = 512
	allocLargeFrom  = 64 << 20
	allocLargeRound = 2 << 20
)

// allocClass returns the size class of an n-byte request.
func allocClass(n int64) int64 {
	switch {
	case n <= allocMinClass:
		return allocMinClass
	case n <= 2048:
		return (n + 511) / 512 * 512
	case n > allocLargeFrom:
		return (n + allocLargeRound - 1) / allocLargeRound * allocLargeRound
	}
	p := int64(2048)
	for p*2 < n {
		p *= 2
	}
	// p < n ≤ 2p: classes 1.25p, 1.5p, 1.75p, 2p.
	for q := int64(5); q <= 8; q++ {
		if c := p * q / 4; c >= n {
			return c
		}
	}
	return 2 * p
}

// alloc returns a block of at least n bytes.
func (a *cachingAllocator) alloc(n int64) (Ptr, error) {
	if n < 0 {
		return 0, fmt.Errorf("cuda: Alloc of %d bytes", n)
	}
	a.stats.Allocs++
	c := allocClass(n)
	if p, size, ok := a.takeCached(c); ok {
		a.stats.Hits++
		a.use(p, size)
		return p, nil
	}
	p, err := a.src.memAlloc(c)
	if errors.Is(err, errDriverOOM) {
		// Release the cache (after the work that may still use it) and retry once.
		if rerr := a.release(); rerr != nil {
			return 0, rerr
		}
		p, err = a.src.memAlloc(c)
	}
	if errors.Is(err, errDriverOOM) {
		free, _, ierr := a.src.memInfo()
		if ierr != nil {
			return 0, ierr
		}
		return 0, &OOMError{Device: a.device, Requested: n, Free: free}
	}
	if err != nil {
		return 0, err
	}
	a.stats.Reserved += c
	a.use(p, c)
	return p, nil
}

// takeCached pops a cached block for class c (for large classes, the smallest cached block
// of at most c + c/8 bytes).
func (a *cachingAllocator) takeCached(c int64) (Ptr, int64, bool) {
	size := c
	if c > allocLargeFrom {
		best := int64(-1)
		for s, l := range a.free {
			if len(l) > 0 && s >= c && s <= c+c/8 && (best < 0 || s < best) {
				best = s
			}
		}
		if best < 0 {
			return 0, 0, false
		}
		size = best
	}
	l := a.free[size]
	if len(l) == 0 {
		return 0, 0, false
	}
	p := l[len(l)-1]
	a.free[size] = l[:len(l)-1]
	a.stats.Cached -= size
	return p, size, true
}

func (a *cachingAllocator) use(p Ptr, size int64) {
	a.live[p] = size
	a.stats.InUse += size
	a.stats.Peak = max(a.stats.Peak, a.stats.InUse)
}

// freeBlock returns a live block to its free list.
func (a *cachingAllocator) freeBlock(p Ptr) error {
	size, ok := a.live[p]
	if !ok {
		return fmt.Errorf("cuda: Free of %#x, which is not a live allocation of %s", uint64(p), a.device)
	}
	delete(a.live, p)
	a.stats.InUse -= size
	a.free[size] = append(a.free[size], p)
	a.stats.Cached += size
	return nil
}

// owner returns the live block containing [p, p+n) (for bounds checks of copies), or false.
func (a *cachingAllocator) contains(p Ptr, n int64) bool {
	if size, ok := a.live[p]; ok {
		return n <= size
	}
	// Interior pointers (views, guard bands): a linear scan is fine for a check that only
	// runs on copies, not launches.
	for base, size := range a.live {
		if p >= base && uint64(p)+uint64(n) <= uint64(base)+uint64(size) {
			return true
		}
	}
	return false
}

// release synchronises and returns every cached block to the driver.
func (a *cachingAllocator) release() error {
	if a.stats.Cached == 0 {
		return nil
	}
	if err := a.src.sync(); err != nil {
		return err
	}
	sizes := make([]int64, 0, len(a.free))
	for s := range a.free {
		sizes = append(sizes, s)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] > sizes[j] })
	for _, s := range sizes {
		for _, p := range a.free[s] {
			if err := a.src.memFree(p); err != nil {
				return err
			}
			a.stats.Cached -= s
			a.stats.Reserved -= s
		}
		delete(a.free, s)
	}
	a.stats.Releases++
	return nil
}

// releaseAll frees live and cached blocks (device close).
func (a *cachingAllocator) releaseAll() error {
	var first error
	for p, s := range a.live {
		if err := a.src.memFree(p); err != nil && first == nil {
			first = err
		}
		a.stats.InUse -= s
		a.stats.Reserved -= s
		delete(a.live, p)
	}
	for s, l := range a.free {
		for _, p := range l {
			if err := a.src.memFree(p); err != nil && first == nil {
				first = err
			}
			a.stats.Cached -= s
			a.stats.Reserved -= s
		}
		delete(a.free, s)
	}
	return first
}
