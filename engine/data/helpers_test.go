package data

import (
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
	"os"
	"path/filepath"
	"testing"
)

// sharedData locates a file of ../shared/data, skipping the test when it is absent.
func sharedData(t *testing.T, rel string) string { return testutil.SharedData(t, rel) }

// writeFile writes content to a new file in a test temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
