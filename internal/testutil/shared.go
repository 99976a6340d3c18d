// Package testutil holds helpers shared by tests: locating the real datasets of
// ../shared/data (skipping, with the path, when they are absent).
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod above the working directory, or "" if none.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// SharedData returns the path of rel inside ../shared/data (relative to the repository
// root) and skips the test with a message naming the path when it is absent
// (shared/data/README.md: tests must never fail or download when the data is missing).
func SharedData(t testing.TB, rel string) string {
	t.Helper()
	root := RepoRoot()
	if root == "" {
		t.Skip("skipping: no go.mod above the test directory, so ../shared/data cannot be located")
	}
	p := filepath.Join(root, "..", "shared", "data", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: real data not found at %s (see its README.md)", p)
	}
	return p
}
