package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binPath is the mdm-gpu binary built by TestMain for the tests that need a separate
// process (signals); empty when the build failed (those tests then fail).
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mdm-gpu-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "mdm-gpu")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mdm-gpu for the process tests failed: %v\n%s", err, out)
	} else {
		binPath = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	if refRoot != "" {
		os.RemoveAll(refRoot)
	}
	if gpt2Dir != "" {
		os.RemoveAll(gpt2Dir)
	}
	os.Exit(code)
}

// result is one in-process CLI invocation.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s\n--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the command line in-process (JSON logs, no progress bar).
func cli(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return result{out.String(), errb.String(), code}
}

// mustCLI runs the command line and fails the test unless it exits 0.
func mustCLI(t *testing.T, args ...string) result {
	t.Helper()
	r := cli(t, args...)
	if r.code != 0 {
		t.Fatalf("mdm-gpu %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// words is the vocabulary of the synthetic test corpus.
var words = strings.Fields(`the a cat dog sat on mat and ran to house of big small red blue
	old man woman child saw it was in with by under tree river stone bird sang day night`)

// writeCorpus writes a deterministic English-like corpus of about n bytes.
func writeCorpus(t *testing.T, path string, n int, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	var b strings.Builder
	for b.Len() < n {
		k := 4 + r.IntN(8)
		for i := range k {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[r.IntN(len(words))])
		}
		b.WriteString(".\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyArgs is a very small model that trains in milliseconds per step.
func tinyArgs(data, out string, extra ...string) []string {
	args := []string{"train", "--data", data, "--out", out, "--seq-len", "32", "--dim", "16", "--layers", "1", "--heads", "2",
		"--mlp-hidden", "32", "--cond-dim", "8", "--batch", "4", "--warmup", "5", "--eval-windows", "4", "--eval-batch", "4",
		"--eval-every", "0", "--ckpt-every", "0", "--threads", "1"}
	return append(args, extra...)
}

// dirState hashes every file under dir (relative path → sha256), for "nothing changed"
// checks.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		st[rel] = hex.EncodeToString(h[:])
		return nil
	})
	return st
}

func sameState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
