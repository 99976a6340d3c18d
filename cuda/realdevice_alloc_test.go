package cuda

import (
	"errors"
	"testing"
)

func TestAllocClass(t *testing.T) {
	for _, c := range []struct{ n, want int64 }{
		{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {2048, 2048}, {2049, 2560}, {2560, 2560},
		{2561, 3072}, {3585, 4096}, {4097, 5120}, {100 << 10, 112 << 10}, {1 << 20, 1 << 20},
		{(1 << 20) + 1, 1280 << 10}, {64 << 20, 64 << 20}, {(64 << 20) + 1, 66 << 20}, {1 << 30, 1 << 30},
	} {
		if got := allocClass(c.n); got != c.want {
			t.Errorf("allocClass(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	prev := int64(0)
	for n := int64(0); n < 80<<20; n = n*9/8 + 1 {
		c := allocClass(n)
		if c < n || c%512 != 0 || c < prev {
			t.Fatalf("allocClass(%d) = %d: want ≥ n, a multiple of 512, monotonic", n, c)
		}
		if n > 2048 && float64(c) > 1.25*float64(n)+512 {
			t.Fatalf("allocClass(%d) = %d wastes more than 25%%", n, c)
		}
		prev = c
	}
}

// fakeBlocks is a blockSource over a byte budget.
type fakeBlocks struct {
	capacity, used int64
	next           Ptr
	sizes          map[Ptr]int64
	allocs, frees  int
	syncs          int
}

func (f *fakeBlocks) memAlloc(n int64) (Ptr, error) {
	if f.used+n > f.capacity {
		return 0, errDriverOOM
	}
	f.next += Ptr(n)
	f.sizes[f.next] = n
	f.used += n
	f.allocs++
	return f.next, nil
}

func (f *fakeBlocks) memFree(p Ptr) error {
	f.used -= f.sizes[p]
	delete(f.sizes, p)
	f.frees++
	return nil
}
func (f *fakeBlocks) memInfo() (int64, int64, error) { return f.capacity - f.used, f.capacity, nil }
func (f *fakeBlocks) sync() error                    { f.syncs++; return nil }

func TestCachingAllocator(t *testing.T) {
	src := &fakeBlocks{capacity: 300 << 20, sizes: map[Ptr]int64{}}
	a := newCachingAllocator(src, "fake")
	p1, _ := a.alloc(1000)
	p2, _ := a.alloc(1000)
	if p1 == p2 {
		t.Fatal("two live allocations share a pointer")
	}
	a.freeBlock(p1)
	p3, _ := a.alloc(900) // same class (1024): reused
	if p3 != p1 || src.allocs != 2 {
		t.Errorf("reuse: got %#x (allocs %d), want %#x from the cache", p3, src.allocs, p1)
	}
	if err := a.freeBlock(p1 + 1); err == nil {
		t.Error("free of an unknown pointer accepted")
	}
	if err := a.freeBlock(p3); err != nil {
		t.Fatal(err)
	}
	if err := a.freeBlock(p3); err == nil {
		t.Error("double free accepted")
	}
	// Large blocks: a cached block up to 1/8 larger is reused.
	big, _ := a.alloc(100 << 20)
	a.freeBlock(big)
	if q, _ := a.alloc(95 << 20); q != big {
		t.Errorf("large reuse: got %#x, want %#x", q, big)
	} else {
		a.freeBlock(q)
	}
	if q, _ := a.alloc(50 << 20); q == big {
		t.Error("a block twice the request was reused")
	}
	st := a.stats
	if st.InUse+st.Cached != st.Reserved || st.Hits != 2 || st.Allocs != 6 {
		t.Errorf("stats %+v", st)
	}
	// OOM: the cache is released (after a sync), then the typed error.
	_, err := a.alloc(290 << 20)
	var oom *OOMError
	if !errors.As(err, &oom) || oom.Requested != 290<<20 || oom.Free != src.capacity-src.used || src.syncs == 0 {
		t.Errorf("alloc beyond capacity = %v (free %d, syncs %d)", err, src.capacity-src.used, src.syncs)
	}
	if a.stats.Cached != 0 {
		t.Errorf("cache not released on OOM: %+v", a.stats)
	}
	if err := a.releaseAll(); err != nil || src.used != 0 || a.stats.Reserved != 0 {
		t.Errorf("releaseAll: %v, driver still holds %d bytes, stats %+v", err, src.used, a.stats)
	}
}
