package data

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedData returns the path of rel inside the project's real-data folder
// (../shared/data relative to the repository root, found by walking up from the test's
// working directory to the directory holding go.mod). It skips the test, naming the
// missing path, when the folder or the file is absent.
func sharedData(t *testing.T, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("skipping: no go.mod above the test directory, so ../shared/data cannot be located")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "data", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: real data not found at %s (see ../shared/data/README.md)", p)
	}
	return p
}

// writeFile writes content to a new file in a test temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
