package sim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/kernels/sim/internal/kgen"
)

// TestGeneratedFilesUpToDate fails when a kernel or a .cu file was added, renamed or removed without
// running `go generate ./kernels/sim`.
func TestGeneratedFilesUpToDate(t *testing.T) {
	problems, err := kgen.Check(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: run `go generate ./kernels/sim`", p)
	}
}

// TestEveryKernelRegistered: every `KERNEL void name(` in kernels/*.cu and testdata/*.cu can be
// launched (registered names are what this binary was built with).
func TestEveryKernelRegistered(t *testing.T) {
	fams, err := kgen.Scan(".")
	if err != nil {
		t.Fatal(err)
	}
	have := Kernels()
	for _, f := range fams {
		for _, k := range f.Kernels {
			if !slices.Contains(have, k) {
				t.Errorf("kernel %s of %v is not registered: run `go generate ./kernels/sim`", k, f.Sources)
			}
		}
	}
}

func TestKgenScanner(t *testing.T) {
	src := []byte(`
#include "compat.cuh"
// KERNEL void commented_out(int* p) {}
/* KERNEL void also_commented(int* p) {} */
KERNEL void plain_fwd_f32(const float* x) {}
KERNEL void __launch_bounds__(256) bounded_bwd_bf16(
    const float* x) {}
KERNEL
void split_step_f32 (int n) {}
const char* s = "KERNEL void in_string(";
`)
	got := kgen.Kernels(src)
	want := []string{"plain_fwd_f32", "bounded_bwd_bf16", "split_step_f32"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestKgenNewFamily: a new kernels/<family>.cu gets its own generated file with its kernels and
// hoisted system headers; nvcc-only includes are skipped.
func TestKgenNewFamily(t *testing.T) {
	root := t.TempDir()
	simDir := filepath.Join(root, "sim")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(simDir, "testdata"), 0o755))
	must(os.WriteFile(filepath.Join(root, "common.cuh"), []byte("#pragma once\n#include <cfloat>\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "layer_norm.cu"), []byte(`#include "compat.cuh"
#include "common.cuh"
#if defined(__CUDACC__)
#include <cuda_pipeline.h>
#else
#include <algorithm>
#endif
KERNEL void layer_norm_fwd_bf16(float* y) {}
KERNEL void layer_norm_bwd_bf16(float* dx) {}
`), 0o644))
	must(os.WriteFile(filepath.Join(simDir, "testdata", "t.cu"), []byte("KERNEL void t_fwd_f32(int n) {}\n"), 0o644))
	touched, err := kgen.Write(simDir)
	must(err)
	if !slices.Equal(touched, []string{"k_layer_norm.cpp", "k_selftest.cpp"}) {
		t.Errorf("wrote %v", touched)
	}
	data, err := os.ReadFile(filepath.Join(simDir, "k_layer_norm.cpp"))
	must(err)
	for _, want := range []string{"#include <cfloat>\n", "#include <algorithm>\n", "CUDASIM_TU(layer_norm)",
		"#include \"../layer_norm.cu\"", "CUDASIM_REGISTER(layer_norm_fwd_bf16)\nCUDASIM_REGISTER(layer_norm_bwd_bf16)\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("k_layer_norm.cpp lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "cuda_pipeline") {
		t.Errorf("k_layer_norm.cpp hoisted an nvcc-only include:\n%s", data)
	}
	problems, err := kgen.Check(simDir)
	must(err)
	if len(problems) != 0 {
		t.Errorf("fresh files reported stale: %v", problems)
	}
	must(os.Remove(filepath.Join(root, "layer_norm.cu")))
	problems, err = kgen.Check(simDir)
	must(err)
	if !slices.Equal(problems, []string{"k_layer_norm.cpp belongs to no kernel family any more"}) {
		t.Errorf("after removing the .cu: %v", problems)
	}
	touched, err = kgen.Write(simDir)
	must(err)
	if !slices.Equal(touched, []string{"k_layer_norm.cpp (removed)"}) {
		t.Errorf("wrote %v", touched)
	}
}
