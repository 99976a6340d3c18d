package fetch

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Options configures Fetch and FetchFile.
type Options struct {
	// Dir is the directory the files go to (created if missing). Required.
	Dir string
	// Client makes the HTTP requests; nil means a client whose transport gives up on a
	// server that sends no response headers within 60 s (there is no overall timeout:
	// cancel ctx instead).
	Client *http.Client
	// Progress receives the progress bars; nil means os.Stderr, io.Discard silences them.
	Progress io.Writer
	// Log receives warnings and notes (one line each); nil means os.Stderr.
	Log io.Writer
	// Unpack applies each file's Unpack step after verification.
	Unpack bool
	// Attempts is the number of tries per URL for transient failures (dropped
	// connections, HTTP 5xx or 429) before moving to the next mirror; 0 means 5.
	Attempts int
	// RetryWait is the pause before retry n, multiplied by n; 0 means 1 s.
	RetryWait time.Duration
}

func (o Options) withDefaults() Options {
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 60 * time.Second
		o.Client = &http.Client{Transport: tr}
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.RetryWait <= 0 {
		o.RetryWait = time.Second
	}
	return o
}

// DefaultRoot returns the directory under which `mdm-gpu data fetch` keeps datasets,
// one sub-directory per dataset: $MDM_DATA_DIR if set, else <user cache dir>/mdm-gpu/
// datasets (e.g. ~/.cache/mdm-gpu/datasets on Linux).
func DefaultRoot() (string, error) {
	if d := os.Getenv("MDM_DATA_DIR"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no data directory: set MDM_DATA_DIR (%w)", err)
	}
	return filepath.Join(c, "mdm-gpu", "datasets"), nil
}

// Fetch downloads every file of ds into opt.Dir (see FetchFile) and returns the paths
// of the verified files followed, when opt.Unpack is set, by the unpacked files. A
// dataset with unverified files is announced with a warning on opt.Log first.
func Fetch(ctx context.Context, ds Dataset, opt Options) ([]string, error) {
	if err := validateDataset(ds); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	if !ds.Verified() {
		fmt.Fprintf(opt.Log, "warning: dataset %s has files without a published checksum; they are downloaded unverified\n", ds.Name)
	}
	var paths []string
	for _, f := range ds.Files {
		p, err := FetchFile(ctx, f, opt)
		if err != nil {
			return paths, fmt.Errorf("fetch %s: %w", ds.Name, err)
		}
		paths = append(paths, p...)
	}
	return paths, nil
}

// FetchFile downloads one file to opt.Dir/f.Name and returns its path, followed by the
// unpacked files when opt.Unpack is set and f.Unpack asks for it.
//
// If opt.Dir/f.Name already exists and verifies (size and checksum), nothing is
// downloaded. Otherwise the bytes go to opt.Dir/f.Name + ".part": an existing .part is
// resumed with an HTTP Range request; a server that ignores Range (200 instead of 206)
// restarts the download cleanly from byte 0; a dropped connection is retried (resuming)
// up to opt.Attempts times, then the mirrors are tried. When all bytes are there the
// size and checksum are checked: a mismatch deletes the .part and returns an error
// naming both digests; a match is fsynced and atomically renamed to opt.Dir/f.Name. A
// failed download keeps the .part so that running again resumes it.
func FetchFile(ctx context.Context, f File, opt Options) ([]string, error) {
	if opt.Dir == "" {
		return nil, errors.New("fetch: Options.Dir is empty; give the directory to download into")
	}
	if err := validateDataset(Dataset{Name: "file", Files: []File{f}}); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", f.Name, err)
	}
	final := filepath.Join(opt.Dir, f.Name)
	part := final + ".part"

	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() {
		switch {
		case !f.Verified:
			fmt.Fprintf(opt.Log, "%s: already present; it has no published checksum, so it is kept as it is\n", final)
			return finish(f, final, opt)
		case fi.Size() != f.Size:
			fmt.Fprintf(opt.Log, "warning: %s is %d bytes, not %d; downloading it again\n", final, fi.Size(), f.Size)
		default:
			got, err := digestFile(final, f.Algo)
			if err != nil {
				return nil, fmt.Errorf("fetch %s: %w", f.Name, err)
			}
			if got == f.Sum {
				fmt.Fprintf(opt.Log, "%s: already present and verified (%s), not downloading\n", final, f.Algo)
				return finish(f, final, opt)
			}
			fmt.Fprintf(opt.Log, "warning: %s has %s %s, not %s; downloading it again\n", final, f.Algo, got, f.Sum)
		}
	}
	if !f.Verified {
		fmt.Fprintf(opt.Log, "warning: %s has no published checksum; it is downloaded UNVERIFIED from %s\n", f.Name, f.URL)
	}

	var errs []error
	done := false
	for _, u := range append([]string{f.URL}, f.Mirrors...) {
		err := downloadWithRetries(ctx, u, part, f, opt)
		if err == nil {
			done = true
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch %s: %w (partial download kept at %s; run again to resume)", f.Name, ctx.Err(), part)
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	if !done {
		return nil, fmt.Errorf("fetch %s: every URL failed (partial download, if any, kept at %s; run again to resume): %w", f.Name, part, errors.Join(errs...))
	}
	if err := verifyAndRename(f, part, final, opt); err != nil {
		return nil, err
	}
	return finish(f, final, opt)
}

// finish returns the path of a verified file plus its unpacked outputs.
func finish(f File, final string, opt Options) ([]string, error) {
	paths := []string{final}
	if opt.Unpack && f.Unpack != NoUnpack {
		out, err := unpack(final, f.Unpack, opt)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: unpack: %w", f.Name, err)
		}
		paths = append(paths, out...)
	}
	return paths, nil
}

// verifyAndRename checks the complete .part and moves it into place.
func verifyAndRename(f File, part, final string, opt Options) error {
	fi, err := os.Stat(part)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", f.Name, err)
	}
	if f.Size > 0 && fi.Size() != f.Size {
		os.Remove(part)
		return fmt.Errorf("fetch %s: downloaded %d bytes, want %d; the download was deleted, run again", f.Name, fi.Size(), f.Size)
	}
	algo := f.Algo
	if !f.Verified {
		algo = SHA256
	}
	got, err := digestFile(part, algo)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", f.Name, err)
	}
	if f.Verified && got != f.Sum {
		os.Remove(part)
		return fmt.Errorf("fetch %s: %s mismatch: got %s, want %s (%d bytes); the download was deleted. The server may have changed the file or it was corrupted in transit: run again, and if it persists report it",
			f.Name, f.Algo, got, f.Sum, fi.Size())
	}
	if !f.Verified {
		fmt.Fprintf(opt.Log, "warning: %s downloaded UNVERIFIED: %d bytes, sha256 %s; check these against a trusted source before relying on the file\n", f.Name, fi.Size(), got)
	}
	if err := syncFile(part); err != nil {
		return fmt.Errorf("fetch %s: %w", f.Name, err)
	}
	if err := os.Rename(part, final); err != nil {
		return fmt.Errorf("fetch %s: %w", f.Name, err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("fetch %s: %w", f.Name, err)
	}
	return nil
}

// permanentError marks a failure that retrying the same URL will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(format string, a ...any) error {
	return &permanentError{fmt.Errorf(format, a...)}
}

// downloadWithRetries tries one URL up to opt.Attempts times, resuming each time.
func downloadWithRetries(ctx context.Context, url, part string, f File, opt Options) error {
	for attempt := 1; ; attempt++ {
		err := downloadOnce(ctx, url, part, f, opt)
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) || ctx.Err() != nil || attempt >= opt.Attempts {
			return err
		}
		wait := opt.RetryWait * time.Duration(attempt)
		fmt.Fprintf(opt.Log, "%s: %v; retrying in %s (attempt %d of %d)\n", f.Name, err, wait, attempt+1, opt.Attempts)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// downloadOnce makes one request, appending to (or restarting) the .part file. It
// returns nil when the .part holds f.Size bytes (or, for an unknown size, when the
// server finished the body).
func downloadOnce(ctx context.Context, url, part string, f File, opt Options) error {
	var offset int64
	if fi, err := os.Stat(part); err == nil {
		offset = fi.Size()
		if f.Size == 0 || offset > f.Size {
			offset = 0 // cannot resume without a known size, or the .part is too long
		}
	}
	if f.Size > 0 && offset == f.Size {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return permanent("bad request: %w", err)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := opt.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	flags := os.O_CREATE | os.O_WRONLY
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset || (f.Size > 0 && total >= 0 && total != f.Size) {
			os.Truncate(part, 0)
			return fmt.Errorf("server answered the range request for byte %d with Content-Range %q; restarting from byte 0", offset, resp.Header.Get("Content-Range"))
		}
		flags |= os.O_APPEND
	case http.StatusOK:
		if offset > 0 {
			fmt.Fprintf(opt.Log, "%s: the server ignored the range request; restarting from byte 0\n", f.Name)
		}
		offset = 0
		flags |= os.O_TRUNC
		if f.Size > 0 && resp.ContentLength >= 0 && resp.ContentLength != f.Size {
			return permanent("server offers %d bytes, the registry expects %d", resp.ContentLength, f.Size)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		os.Truncate(part, 0)
		return fmt.Errorf("server refused the range request for byte %d (HTTP 416); restarting from byte 0", offset)
	default:
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		return permanent("HTTP %s", resp.Status)
	}

	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return permanent("%w", err)
	}
	desc := f.Name
	if offset > 0 {
		desc += " (resumed)"
	}
	bar := newBar(opt.Progress, desc, f.Size, offset)
	body := io.Reader(resp.Body)
	if f.Size > 0 {
		body = io.LimitReader(resp.Body, f.Size-offset+1) // one extra byte reveals an overlong body
	}
	n, copyErr := io.Copy(io.MultiWriter(out, bar), body)
	closeErr := out.Close()
	got := offset + n
	switch {
	case closeErr != nil:
		bar.Exit()
		return permanent("writing %s: %w", part, closeErr)
	case f.Size > 0 && got > f.Size:
		bar.Exit()
		os.Remove(part)
		return permanent("server sent more than the expected %d bytes; the download was deleted", f.Size)
	case copyErr != nil:
		bar.Exit()
		return fmt.Errorf("connection lost after %d of %s bytes: %w", got, sizeString(f.Size), copyErr)
	case f.Size > 0 && got < f.Size:
		bar.Exit()
		return fmt.Errorf("connection closed after %d of %d bytes", got, f.Size)
	}
	bar.Finish()
	return nil
}

func sizeString(n int64) string {
	if n <= 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// parseContentRange parses "bytes start-end/total" (total may be "*", returned as -1).
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, total, true
}

func newBar(w io.Writer, desc string, size, offset int64) *progressbar.ProgressBar {
	max := size
	if max <= 0 {
		max = -1
	}
	bar := progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(10),
		progressbar.OptionThrottle(65*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprint(w, "\n") }),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionFullWidth(),
		progressbar.OptionSetRenderBlankState(true),
	)
	if offset > 0 {
		bar.Set64(offset)
	}
	return bar
}

func newHash(a Algo) hash.Hash {
	switch a {
	case SHA512:
		return sha512.New()
	case MD5:
		return md5.New()
	default:
		return sha256.New()
	}
}

// digestFile returns the lower-case hex digest of a file.
func digestFile(path string, a Algo) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := newHash(a)
	if _, err := io.Copy(h, fh); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func syncFile(path string) error {
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
