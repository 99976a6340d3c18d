package cuda

import (
	"runtime"
	"testing"
	"time"
)

// Hand-off costs of the real device, measured without a GPU: the driver is the fake in
// "fast" mode (a launch costs nothing, or a busy-wait standing in for cuLaunchKernel), so
// the numbers are the price of getting work onto the device's locked thread.
//
//	go test -run XXX -bench 'Handoff|RealDevice' -benchtime 200000x ./cuda/

// BenchmarkHandoffCtxPattern reproduces gorgonia.org/cu's cu.Ctx hand-off
// (go-cuda-notes.md §1.5): a closure sent on an unbuffered channel to a goroutine locked to
// its OS thread, which answers on an error channel. One round trip per driver call.
func BenchmarkHandoffCtxPattern(b *testing.B) {
	work := make(chan func() error)
	errs := make(chan error)
	go func() {
		runtime.LockOSThread()
		for f := range work {
			errs <- f()
		}
	}()
	defer close(work)
	noop := func() error { return nil }
	b.ResetTimer()
	for range b.N {
		work <- noop
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

func benchDevice(b *testing.B, launchCost time.Duration, opts ...RealOption) *RealDevice {
	b.Helper()
	b.Setenv("MDM_CUDA_SYNC", "")
	f := newFakeDriver(1 << 30)
	f.fast = true
	f.launchCost = launchCost
	d, err := newRealDevice(f, 0, nil, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if err := d.Launch("noop", D1(1), D1(32), 0); err != nil { // warm the kernel cache
		b.Fatal(err)
	}
	return d
}

// BenchmarkRealDeviceSyncCall: one call that waits for the worker (Sync, a copy, an
// allocation miss).
func BenchmarkRealDeviceSyncCall(b *testing.B) {
	d := benchDevice(b, 0)
	b.ResetTimer()
	for range b.N {
		if err := d.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRealDeviceLaunch: the caller's cost of one launch (validated, enqueued; the
// worker issues it concurrently).
func BenchmarkRealDeviceLaunch(b *testing.B) {
	d := benchDevice(b, 0)
	args := Args(Ptr(0x1000), 4096, float32(1.5), int32(7))
	b.ResetTimer()
	for range b.N {
		if err := d.Launch("noop", D1(64), D1(256), 0, args...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRealDeviceLaunchNoSpin: the same with a worker that parks at once when idle.
func BenchmarkRealDeviceLaunchNoSpin(b *testing.B) {
	d := benchDevice(b, 0, withSpin(0))
	args := Args(Ptr(0x1000), 4096, float32(1.5), int32(7))
	b.ResetTimer()
	for range b.N {
		if err := d.Launch("noop", D1(64), D1(256), 0, args...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	d.Sync()
}

// BenchmarkRealDeviceStep: a "step" of 100 launches and one Sync, per launch. With a
// driver launch cost of 2 µs (about cuLaunchKernel's), the pipeline should run at the
// driver's speed, not add a hand-off per launch.
func BenchmarkRealDeviceStep(b *testing.B) {
	for _, c := range []struct {
		name string
		cost time.Duration
	}{{"driver=0", 0}, {"driver=2us", 2 * time.Microsecond}} {
		b.Run(c.name, func(b *testing.B) {
			d := benchDevice(b, c.cost)
			args := Args(Ptr(0x1000), 4096)
			b.ResetTimer()
			for i := range b.N {
				if err := d.Launch("noop", D1(64), D1(256), 0, args...); err != nil {
					b.Fatal(err)
				}
				if i%100 == 99 {
					if err := d.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			d.Sync()
		})
	}
}

// BenchmarkRealDeviceAllocFree: a cached allocation and free (no driver call).
func BenchmarkRealDeviceAllocFree(b *testing.B) {
	d := benchDevice(b, 0)
	b.ResetTimer()
	for range b.N {
		p, err := d.Alloc(1 << 20)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Free(p); err != nil {
			b.Fatal(err)
		}
	}
}
