package detect

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
)

// TestDetectHere probes this machine's NVML. On machines without a GPU (CI, development)
// it must report a reason instead of failing or crashing.
func TestDetectHere(t *testing.T) {
	p := Detect()
	t.Logf("Detect(): %s", p.Summary())
	if len(p.GPUs) == 0 && p.Reason == "" {
		t.Error("no GPU and no reason")
	}
}

func TestDetectMissingLibrary(t *testing.T) {
	p := DetectLibrary(filepath.Join(t.TempDir(), "libnvidia-ml.so.1"))
	if len(p.GPUs) != 0 || !strings.Contains(p.Reason, "no NVIDIA driver") {
		t.Errorf("probe = %+v, want no GPU and the missing-driver reason", p)
	}
	if got := p.Summary(); !strings.HasPrefix(got, "no GPU: no NVIDIA driver") {
		t.Errorf("Summary() = %q", got)
	}
}

func TestDetectMock(t *testing.T) {
	for _, c := range []struct {
		vis    string
		set    bool
		want   []int
		reason string
	}{
		{"", false, []int{0, 1, 2, 3, 4, 5, 6, 7}, ""},
		{"2,5", true, []int{2, 5}, ""},
		{"1,99,2", true, []int{1}, ""}, // CUDA stops at the first invalid entry
		{"", true, nil, "hides all 8"},
		{"-1", true, nil, "hides all 8"},
		{"NoDevFiles", true, nil, "hides all 8"},
		{"3,3", true, []int{3}, ""},
	} {
		t.Run(c.vis, func(t *testing.T) {
			if c.set {
				t.Setenv("CUDA_VISIBLE_DEVICES", c.vis)
			} else {
				os.Unsetenv("CUDA_VISIBLE_DEVICES")
			}
			p := DetectWith(dgxh200.New())
			var got []int
			for _, g := range p.GPUs {
				got = append(got, g.Index)
				if !strings.Contains(g.Name, "H200") || g.ComputeCapability != "9.0" || g.MemoryBytes < 140e9 {
					t.Errorf("GPU %+v", g)
				}
			}
			if !reflect.DeepEqual(got, c.want) || !strings.Contains(p.Reason, c.reason) {
				t.Errorf("CUDA_VISIBLE_DEVICES=%q: GPUs %v (reason %q), want %v (%q)", c.vis, got, p.Reason, c.want, c.reason)
			}
		})
	}
	// UUID prefixes select too.
	srv := dgxh200.New()
	d, _ := srv.DeviceGetHandleByIndex(4)
	uuid, _ := d.GetUUID()
	t.Setenv("CUDA_VISIBLE_DEVICES", uuid[:12])
	if p := DetectWith(srv); len(p.GPUs) != 1 || p.GPUs[0].Index != 4 {
		t.Errorf("UUID prefix %s: %+v", uuid[:12], p.GPUs)
	}
}

// A fake libnvidia-ml.so with 2 GPUs that lacks the memory, UUID, compute capability,
// CUDA version and error-string entry points (an old or partial driver). Detect must skip
// those calls rather than die on an undefined symbol (pitfalls.md B18).
const fakeNVML = `
#include <stdio.h>
#include <stdint.h>
int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
int nvmlSystemGetDriverVersion(char *v, unsigned n) { snprintf(v, n, "999.12"); return 0; }
int nvmlDeviceGetCount_v2(unsigned *c) { *c = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) { *h = (void *)(uintptr_t)(i + 1); return 0; }
int nvmlDeviceGetName(void *h, char *name, unsigned n) { snprintf(name, n, "Fake GPU %d", (int)(uintptr_t)h); return 0; }
`

func TestDetectPartialLibrary(t *testing.T) {
	if lib := os.Getenv("MDM_TEST_FAKE_NVML"); lib != "" {
		// Child: probe only the fake library in this process.
		json.NewEncoder(os.Stdout).Encode(DetectLibrary(lib))
		return
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	src, lib := filepath.Join(dir, "fake.c"), filepath.Join(dir, "libnvidia-ml.so.1")
	os.WriteFile(src, []byte(fakeNVML), 0o644)
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDetectPartialLibrary$")
	cmd.Env = append(os.Environ(), "MDM_TEST_FAKE_NVML="+lib, "CUDA_VISIBLE_DEVICES=")
	cmd.Env = cmd.Env[:len(cmd.Env)-1] // keep the parent's CUDA_VISIBLE_DEVICES unset
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child died (an NVML call without its symbol?): %v\n%s", err, out)
	}
	var p Probe
	if err := json.Unmarshal([]byte(strings.SplitN(string(out), "\n", 2)[0]), &p); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(p.GPUs) != 2 || p.GPUs[1].Name != "Fake GPU 2" || p.Driver != "999.12" {
		t.Errorf("probe = %+v", p)
	}
	for _, sym := range []string{"nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUUID", "nvmlSystemGetCudaDriverVersion"} {
		if !strings.Contains(strings.Join(p.Missing, " "), sym) {
			t.Errorf("Missing = %v, want %s", p.Missing, sym)
		}
	}
}

// TestNoNVMLLinkDependency builds mdm-detect and checks with readelf that it has no NEEDED
// entry for NVML or the CUDA driver: the CPU build must start on machines without them.
func TestNoNVMLLinkDependency(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	readelf, err := exec.LookPath("readelf")
	if err != nil {
		t.Skip("readelf not installed")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not installed (a packed test binary on a GPU machine)")
	}
	if _, err := os.Stat("cmd/mdm-detect/main.go"); err != nil {
		t.Skip("sources not here:", err)
	}
	bin := filepath.Join(t.TempDir(), "mdm-detect")
	if out, err := exec.Command(gocmd, "build", "-o", bin, "./cmd/mdm-detect").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(readelf, "-d", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "NEEDED") && (strings.Contains(l, "nvidia") || strings.Contains(l, "libcuda")) {
			t.Errorf("mdm-detect links %s", strings.TrimSpace(l))
		}
	}
	run := exec.Command(bin)
	msg, err := run.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("mdm-detect: %s (exit %d)", strings.TrimSpace(string(msg)), code)
	if code != 0 && code != 3 {
		t.Errorf("exit status %d, want 0 or 3", code)
	}
}
