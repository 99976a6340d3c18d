//go:build asan

package sim

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestASanReportsOutOfBounds runs only under `go test -asan`: a kernel's off-by-one read of simulated
// device memory is reported by AddressSanitizer as a heap-buffer-overflow at the kernel's source
// line. ASan ends the process on the first error, so the kernel runs in a child process (this test
// binary re-executed) and the parent checks the report.
func TestASanReportsOutOfBounds(t *testing.T) {
	if os.Getenv("CUDASIM_ASAN_CHILD") == "1" {
		x := upload(t, make([]float32, 64)) // exactly 256 bytes: x[64] is the first byte past the end
		y := dev(t, 256)
		_ = Launch("selftest_oob_read", d1(1), d1(64), 0, []uint64{ptr(x), ptr(y), i32(64)}, Options{})
		t.Fatal("AddressSanitizer did not stop the out-of-bounds read")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestASanReportsOutOfBounds$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CUDASIM_ASAN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the child exited cleanly; output:\n%s", out)
	}
	report := string(out)
	wants := []string{"ERROR: AddressSanitizer: heap-buffer-overflow", "READ of size 4", "0 bytes to the right of 256-byte region"}
	if hasDWARF(t) {
		wants = append(wants, fmt.Sprintf("in selftest_oob_read testdata/selftest.cu:%d", siteLine(t, "oob")))
	} else {
		// Plain `go test` links with -s -w: no symbols or line tables to symbolize the report with.
		t.Logf("test binary has no DWARF; to see kernel file:line in ASan reports run\n" +
			"\tgo test -asan -ldflags='-s=false -w=false' ./kernels/sim/")
	}
	for _, want := range wants {
		if !strings.Contains(report, want) {
			t.Errorf("ASan report lacks %q:\n%s", want, report)
		}
	}
	if t.Failed() || testing.Verbose() {
		// The first lines of the report, for the log.
		lines := strings.Split(report, "\n")
		t.Logf("child report (head):\n%s", strings.Join(lines[:min(len(lines), 12)], "\n"))
	}
}

// hasDWARF reports whether this test binary carries line tables (not the case with go test's default
// -ldflags=-s -w).
func hasDWARF(t *testing.T) bool {
	f, err := elf.Open(os.Args[0])
	if err != nil {
		t.Logf("cannot inspect the test binary: %v", err)
		return false
	}
	defer f.Close()
	return f.Section(".debug_line") != nil || f.Section(".zdebug_line") != nil
}
