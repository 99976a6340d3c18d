package fetch

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer serves one blob in a chosen way and records the Range header of every
// request ("" when absent). It listens on 127.0.0.1 only.
type testServer struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string
}

func (s *testServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ranges)
}

// Server behaviours.
const (
	modeRange       = "range"        // honours Range (http.ServeContent)
	modeNoRange     = "norange"      // always 200 with the whole body
	modeDrop        = "drop"         // first request: half the body, then the connection drops; later: Range honoured
	modeDropNoRange = "drop-norange" // first request drops; later: 200 with the whole body
	modeNotFound    = "404"
	modeAlways503   = "503"
	modeChunkedMore = "chunked-more" // no Content-Length, sends more bytes than the blob
)

func newTestServer(t *testing.T, blob []byte, mode string) *testServer {
	t.Helper()
	s := &testServer{}
	n := 0
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		n++
		first := n == 1
		s.mu.Unlock()
		switch {
		case mode == modeNotFound:
			http.NotFound(w, r)
		case mode == modeAlways503:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case mode == modeChunkedMore:
			w.Write(blob)
			w.(http.Flusher).Flush()
			w.Write([]byte("trailing garbage"))
		case (mode == modeDrop || mode == modeDropNoRange) && first:
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.WriteHeader(http.StatusOK)
			w.Write(blob[:len(blob)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-body
		case mode == modeNoRange || mode == modeDropNoRange:
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Write(blob)
		default:
			http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob))
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func testBlob(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func testFile(url string, blob []byte) File {
	return File{Name: "blob.bin", URL: url, Size: int64(len(blob)), Algo: SHA256, Sum: sha(blob), Verified: true, Source: "test"}
}

func testOptions(t *testing.T) (Options, *bytes.Buffer) {
	var log bytes.Buffer
	return Options{Dir: t.TempDir(), Progress: &bytes.Buffer{}, Log: &log, Attempts: 3, RetryWait: time.Millisecond}, &log
}

// checkFetched asserts the final file holds blob and no .part remains.
func checkFetched(t *testing.T, dir string, blob []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, "blob.bin"))
	if err != nil {
		t.Fatalf("final file: %v", err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("final file has %d bytes (sha256 %s), want %d (sha256 %s)", len(got), sha(got), len(blob), sha(blob))
	}
	if _, err := os.Stat(filepath.Join(dir, "blob.bin.part")); !os.IsNotExist(err) {
		t.Errorf(".part still present after success (stat error %v)", err)
	}
}

func TestFetchRangeServerAndSkipVerified(t *testing.T) {
	blob := testBlob(300_000, 1)
	srv := newTestServer(t, blob, modeRange)
	opt, log := testOptions(t)
	paths, err := Fetch(context.Background(), Dataset{Name: "t", Files: []File{testFile(srv.URL+"/blob.bin", blob)}}, opt)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(opt.Dir, "blob.bin")}; !slices.Equal(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
	checkFetched(t, opt.Dir, blob)
	if got := srv.requests(); !slices.Equal(got, []string{""}) {
		t.Errorf("requests (Range headers) = %q, want one plain GET", got)
	}
	if !strings.Contains(opt.Progress.(*bytes.Buffer).String(), "blob.bin") {
		t.Errorf("no progress bar written")
	}
	// A verified file is not downloaded again.
	if _, err := Fetch(context.Background(), Dataset{Name: "t", Files: []File{testFile(srv.URL+"/blob.bin", blob)}}, opt); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.requests()); got != 1 {
		t.Errorf("second fetch made %d requests in all, want 1 (file already verified)", got)
	}
	if !strings.Contains(log.String(), "already present and verified") {
		t.Errorf("log %q does not say the file was already verified", log.String())
	}
}

func TestFetchResumesPartialWithRange(t *testing.T) {
	blob := testBlob(200_000, 2)
	srv := newTestServer(t, blob, modeRange)
	opt, _ := testOptions(t)
	if err := os.WriteFile(filepath.Join(opt.Dir, "blob.bin.part"), blob[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, opt.Dir, blob)
	if got := srv.requests(); !slices.Equal(got, []string{"bytes=1000-"}) {
		t.Errorf("requests = %q, want one range request bytes=1000-", got)
	}
}

func TestFetchServerIgnoringRangeRestartsCleanly(t *testing.T) {
	blob := testBlob(200_000, 3)
	srv := newTestServer(t, blob, modeNoRange)
	opt, log := testOptions(t)
	// A stale .part whose bytes are wrong: the restart must overwrite them.
	if err := os.WriteFile(filepath.Join(opt.Dir, "blob.bin.part"), bytes.Repeat([]byte{0xAA}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, opt.Dir, blob)
	if got := srv.requests(); !slices.Equal(got, []string{"bytes=5000-"}) {
		t.Errorf("requests = %q, want one range request answered with 200", got)
	}
	if !strings.Contains(log.String(), "ignored the range request") {
		t.Errorf("log %q does not report the ignored range", log.String())
	}
}

func TestFetchDroppedConnectionResumes(t *testing.T) {
	blob := testBlob(400_000, 4)
	for _, mode := range []string{modeDrop, modeDropNoRange} {
		t.Run(mode, func(t *testing.T) {
			srv := newTestServer(t, blob, mode)
			opt, log := testOptions(t)
			if _, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt); err != nil {
				t.Fatal(err)
			}
			checkFetched(t, opt.Dir, blob)
			reqs := srv.requests()
			if len(reqs) != 2 || reqs[0] != "" || !strings.HasPrefix(reqs[1], "bytes=") {
				t.Fatalf("requests = %q, want a plain GET then a range request", reqs)
			}
			// The resume starts where the dropped body ended (at most half the blob).
			from, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(reqs[1], "bytes="), "-"))
			if from <= 0 || from > len(blob)/2 {
				t.Errorf("resumed from byte %d, want within (0, %d]", from, len(blob)/2)
			}
			if !strings.Contains(log.String(), "retrying") {
				t.Errorf("log %q does not mention the retry", log.String())
			}
		})
	}
}

func TestFetchWrongBytesDeletesPart(t *testing.T) {
	blob := testBlob(100_000, 5)
	wrong := testBlob(100_000, 6)
	srv := newTestServer(t, wrong, modeRange)
	opt, _ := testOptions(t)
	_, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt)
	if err == nil {
		t.Fatal("FetchFile succeeded on wrong bytes")
	}
	for _, s := range []string{"sha256 mismatch", "got " + sha(wrong), "want " + sha(blob), "blob.bin"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	for _, name := range []string{"blob.bin", "blob.bin.part"} {
		if _, err := os.Stat(filepath.Join(opt.Dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a checksum mismatch (stat error %v)", name, err)
		}
	}
}

func TestFetchReplacesCorruptExistingFile(t *testing.T) {
	blob := testBlob(50_000, 7)
	srv := newTestServer(t, blob, modeRange)
	opt, log := testOptions(t)
	if err := os.WriteFile(filepath.Join(opt.Dir, "blob.bin"), testBlob(50_000, 8), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, opt.Dir, blob)
	if !strings.Contains(log.String(), "downloading it again") {
		t.Errorf("log %q does not warn about the corrupt file", log.String())
	}
}

func TestFetchPartLongerThanFileRestarts(t *testing.T) {
	blob := testBlob(10_000, 9)
	srv := newTestServer(t, blob, modeRange)
	opt, _ := testOptions(t)
	if err := os.WriteFile(filepath.Join(opt.Dir, "blob.bin.part"), testBlob(20_000, 10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, opt.Dir, blob)
	if got := srv.requests(); !slices.Equal(got, []string{""}) {
		t.Errorf("requests = %q, want one plain GET", got)
	}
}

func TestFetchUnverifiedWarns(t *testing.T) {
	blob := testBlob(5_000, 11)
	srv := newTestServer(t, blob, modeRange)
	opt, log := testOptions(t)
	f := File{Name: "blob.bin", URL: srv.URL, Source: "nowhere published"}
	ds := Dataset{Name: "unverified-test", Files: []File{f}}
	if ds.Verified() {
		t.Fatal("dataset without checksum reports Verified")
	}
	if _, err := Fetch(context.Background(), ds, opt); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, opt.Dir, blob)
	for _, s := range []string{"warning: dataset unverified-test", "UNVERIFIED", sha(blob)} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log %q does not contain %q", log.String(), s)
		}
	}
}

func TestFetchMirrorFallback(t *testing.T) {
	blob := testBlob(30_000, 12)
	dead := newTestServer(t, blob, modeNotFound)
	good := newTestServer(t, blob, modeRange)
	opt, _ := testOptions(t)
	f := testFile(dead.URL+"/blob.bin", blob)
	f.Mirrors = []string{good.URL + "/blob.bin"}
	if _, err := FetchFile(context.Background(), f, opt); err != nil {
		t.Fatal(err)
	}
	checkFetched(t, opt.Dir, blob)
	if n := len(dead.requests()); n != 1 {
		t.Errorf("404 URL was tried %d times, want 1 (a 404 is not retried)", n)
	}
}

func TestFetchGivesUpAfterAttempts(t *testing.T) {
	blob := testBlob(1_000, 13)
	srv := newTestServer(t, blob, modeAlways503)
	opt, _ := testOptions(t)
	_, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("error = %v, want one naming HTTP 503 and how to resume", err)
	}
	if n := len(srv.requests()); n != opt.Attempts {
		t.Errorf("%d requests, want %d attempts", n, opt.Attempts)
	}
}

func TestFetchServerSendsTooMuch(t *testing.T) {
	blob := testBlob(1_000, 14)
	srv := newTestServer(t, blob, modeChunkedMore)
	opt, _ := testOptions(t)
	_, err := FetchFile(context.Background(), testFile(srv.URL, blob), opt)
	if err == nil || !strings.Contains(err.Error(), "more than the expected 1000 bytes") {
		t.Fatalf("error = %v, want 'more than the expected 1000 bytes'", err)
	}
	if _, err := os.Stat(filepath.Join(opt.Dir, "blob.bin.part")); !os.IsNotExist(err) {
		t.Errorf(".part kept after an overlong body")
	}
}

func TestFetchCancelled(t *testing.T) {
	blob := testBlob(1_000, 15)
	srv := newTestServer(t, blob, modeAlways503)
	opt, _ := testOptions(t)
	opt.RetryWait = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := FetchFile(ctx, testFile(srv.URL, blob), opt)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("error = %v, want context deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %s", d)
	}
}

func makeZip(t *testing.T, members map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range members {
			if !yield(k) {
				return
			}
		}
	}) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(members[name]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFetchUnpack(t *testing.T) {
	zipBlob := makeZip(t, map[string]string{"corpus/wiki.train.raw": "train text\n", "corpus/wiki.test.raw": "test text\n", "__MACOSX/._junk": "x"})
	var gzBuf bytes.Buffer
	gw := gzip.NewWriter(&gzBuf)
	gw.Write([]byte("idx bytes"))
	gw.Close()
	zsrv := newTestServer(t, zipBlob, modeRange)
	gsrv := newTestServer(t, gzBuf.Bytes(), modeRange)
	opt, _ := testOptions(t)
	opt.Unpack = true
	zf := File{Name: "corpus.zip", URL: zsrv.URL, Size: int64(len(zipBlob)), Algo: SHA256, Sum: sha(zipBlob), Verified: true, Source: "test", Unpack: UnpackZip}
	gf := File{Name: "labels.gz", URL: gsrv.URL, Size: int64(gzBuf.Len()), Algo: SHA256, Sum: sha(gzBuf.Bytes()), Verified: true, Source: "test", Unpack: UnpackGzip}
	ds := Dataset{Name: "unpack-test", Files: []File{zf, gf}}
	for run := 0; run < 2; run++ { // the second run finds everything in place
		paths, err := Fetch(context.Background(), ds, opt)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			filepath.Join(opt.Dir, "corpus.zip"),
			filepath.Join(opt.Dir, "corpus", "wiki.test.raw"),
			filepath.Join(opt.Dir, "corpus", "wiki.train.raw"),
			filepath.Join(opt.Dir, "labels.gz"),
			filepath.Join(opt.Dir, "labels"),
		}
		if !slices.Equal(paths, want) {
			t.Fatalf("run %d: paths = %q, want %q", run, paths, want)
		}
		for p, content := range map[string]string{want[1]: "test text\n", want[2]: "train text\n", want[4]: "idx bytes"} {
			if b, err := os.ReadFile(p); err != nil || string(b) != content {
				t.Errorf("run %d: %s = %q, %v; want %q", run, p, b, err, content)
			}
		}
		if _, err := os.Stat(filepath.Join(opt.Dir, "__MACOSX")); !os.IsNotExist(err) {
			t.Errorf("__MACOSX entries were extracted")
		}
	}
	if n := len(zsrv.requests()) + len(gsrv.requests()); n != 2 {
		t.Errorf("%d requests over two runs, want 2", n)
	}
}

func TestUnpackRefusesZipSlip(t *testing.T) {
	for _, name := range []string{"../evil.txt", "/abs/evil.txt", `dir\..\..\evil.txt`} {
		blob := makeZip(t, map[string]string{name: "pwned"})
		srv := newTestServer(t, blob, modeRange)
		opt, _ := testOptions(t)
		opt.Unpack = true
		f := File{Name: "evil.zip", URL: srv.URL, Size: int64(len(blob)), Algo: SHA256, Sum: sha(blob), Verified: true, Source: "test", Unpack: UnpackZip}
		_, err := FetchFile(context.Background(), f, opt)
		if err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("member %q: error = %v, want refusal to write outside the directory", name, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(opt.Dir), "evil.txt")); !os.IsNotExist(err) {
			t.Errorf("member %q escaped the directory", name)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"", 0, 0, false},
		{"bytes x-1/2", 0, 0, false},
	}
	for _, c := range cases {
		s, tot, ok := parseContentRange(c.in)
		if s != c.start || tot != c.total || ok != c.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", c.in, s, tot, ok, c.start, c.total, c.ok)
		}
	}
}
