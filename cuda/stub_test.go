//go:build !cuda

package cuda

import (
	"errors"
	"strings"
	"testing"
)

func TestStubNoCUDA(t *testing.T) {
	if CUDABuild {
		t.Fatal("CUDABuild is true without the cuda tag")
	}
	d, err := NewRealDevice(0)
	if d != nil || !errors.Is(err, ErrNoCUDA) || !strings.Contains(err.Error(), "-tags cuda") {
		t.Errorf("NewRealDevice = %v, %v; want ErrNoCUDA explaining the build tag", d, err)
	}
	if b, err := New(1); b != nil || !errors.Is(err, ErrNoCUDA) {
		t.Errorf("New = %v, %v", b, err)
	}
	if _, err := OpenBackend(DeviceSpec{Kind: "cuda", Ordinal: 0}); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("OpenBackend(cuda) = %v", err)
	}
}
