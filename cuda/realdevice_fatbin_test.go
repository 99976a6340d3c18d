package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fatbinTestKernels = `
extern "C" __global__ void add_one_f32(float *x, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.f;
}
__device__ __noinline__ float helper(float v) { return v * 2.f; }
extern "C" __global__ void big_smem_f32(float *x) {
  extern __shared__ float s[];
  s[threadIdx.x] = helper(x[threadIdx.x]);
  __syncthreads();
  x[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}
`

// buildTestFatbin compiles fatbinTestKernels with nvcc and the project's targets, or skips.
func buildTestFatbin(t *testing.T) []byte {
	t.Helper()
	nvcc, err := exec.LookPath("nvcc")
	if err != nil {
		t.Skip("nvcc not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "k.cu")
	out := filepath.Join(dir, "k.fatbin")
	if err := os.WriteFile(src, []byte(fatbinTestKernels), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nvcc, "--fatbin", "-std=c++17", "-O3",
		"-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_80,code=sm_80",
		"-gencode", "arch=compute_80,code=compute_80", "-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nvcc: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFatbinKernels(t *testing.T) {
	img := buildTestFatbin(t)
	got, err := FatbinKernels(img)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"add_one_f32", "big_smem_f32"}; !reflect.DeepEqual(got, want) {
		t.Errorf("FatbinKernels = %v, want %v (entry points only, no device functions)", got, want)
	}
	// Truncated or corrupted images give errors, never panics.
	for n := 0; n < len(img); n += 97 {
		FatbinKernels(img[:n])
	}
	bad := append([]byte(nil), img...)
	bad[8] = 0xff // entries size
	if _, err := FatbinKernels(bad); err == nil {
		t.Error("corrupt header accepted")
	}
	if _, err := FatbinKernels([]byte("not a fatbin at all")); err == nil {
		t.Error("garbage accepted")
	}
	idx, err := kernelIndex(map[string][]byte{"a": img})
	if err != nil || idx["add_one_f32"] != "a" {
		t.Errorf("kernelIndex = %v, %v", idx, err)
	}
	if _, err := kernelIndex(map[string][]byte{"a": img, "b": img}); err == nil || !strings.Contains(err.Error(), "both a and b") {
		t.Errorf("duplicate kernel across fatbins: %v", err)
	}
}

// TestBuiltFatbins parses the fatbins cmake wrote into kernelsbin/ (when there are any):
// each must list its kernels. This is what the CUDA build embeds.
func TestBuiltFatbins(t *testing.T) {
	files, _ := filepath.Glob("kernelsbin/*.fatbin")
	if len(files) == 0 {
		t.Skip("no fatbins in kernelsbin/ (run cmake -S . -B build && cmake --build build)")
	}
	all := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names, err := FatbinKernels(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: no kernels", f)
		}
		all[strings.TrimSuffix(filepath.Base(f), ".fatbin")] = b
		t.Logf("%s: %s", filepath.Base(f), strings.Join(names, " "))
	}
	if _, err := kernelIndex(all); err != nil {
		t.Error(err)
	}
}
