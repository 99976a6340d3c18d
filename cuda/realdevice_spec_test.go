package cuda

import (
	"strings"
	"testing"
)

func TestParseDeviceSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DeviceSpec
		err  string
	}{
		{"", DeviceSpec{Kind: "auto"}, ""},
		{"auto", DeviceSpec{Kind: "auto"}, ""},
		{"cpu", DeviceSpec{Kind: "cpu"}, ""},
		{"SIM", DeviceSpec{Kind: "sim"}, ""},
		{"cuda", DeviceSpec{Kind: "cuda"}, ""},
		{"gpu", DeviceSpec{Kind: "cuda"}, ""},
		{"cuda:3", DeviceSpec{Kind: "cuda", Ordinal: 3}, ""},
		{" cuda:0 ", DeviceSpec{Kind: "cuda"}, ""},
		{"cuda:-1", DeviceSpec{}, "not a GPU ordinal"},
		{"cuda:x", DeviceSpec{}, "not a GPU ordinal"},
		{"tpu", DeviceSpec{}, "unknown device"},
	} {
		got, err := ParseDeviceSpec(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseDeviceSpec(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseDeviceSpec(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if s := (DeviceSpec{Kind: "cuda", Ordinal: 2}).String(); s != "cuda:2" {
		t.Errorf("String() = %q", s)
	}
}

func TestPeakBF16TFLOPs(t *testing.T) {
	for name, want := range map[string]float64{
		"NVIDIA H200":             989,
		"NVIDIA H200 NVL":         835,
		"NVIDIA H100 80GB HBM3":   989.4,
		"NVIDIA H100 PCIe":        756,
		"NVIDIA A100-SXM4-80GB":   312,
		"NVIDIA GeForce RTX 4090": 0,
		"Tesla T4":                0,
		"NVIDIA H100 NVL":         0,
	} {
		if got := PeakBF16TFLOPs(name); got != want {
			t.Errorf("PeakBF16TFLOPs(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestOpenBackendSim(t *testing.T) {
	b, err := OpenBackend(DeviceSpec{Kind: "sim"})
	if err != nil || b.Name() != "sim" {
		t.Fatalf("OpenBackend(sim) = %v, %v", b, err)
	}
	if _, err := OpenBackend(DeviceSpec{Kind: "cpu"}); err == nil {
		t.Error("OpenBackend(cpu) succeeded; cpu is the caller's")
	}
}
