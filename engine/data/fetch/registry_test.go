package fetch

import (
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestBuiltinRegistry(t *testing.T) {
	r := Builtin()
	want := []string{"brown", "cifar10", "enwik8", "fashion-mnist", "lambada", "mnist", "ptb", "text8", "tiny-shakespeare", "wikitext-103", "wikitext-2"}
	if got := r.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	wantFiles := map[string]int{"mnist": 4, "fashion-mnist": 4, "ptb": 3}
	for _, name := range r.Names() {
		d, err := r.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Verified() {
			t.Errorf("%s: not every file has a published checksum", name)
		}
		n := wantFiles[name]
		if n == 0 {
			n = 1
		}
		if len(d.Files) != n {
			t.Errorf("%s: %d files, want %d", name, len(d.Files), n)
		}
		if d.Description == "" {
			t.Errorf("%s: no description", name)
		}
	}
	if _, err := r.Lookup("imagenet"); err == nil || !strings.Contains(err.Error(), "text8") {
		t.Errorf("Lookup(unknown) error = %v, want one listing the known names", err)
	}
	// Lookup returns a copy: changing it does not change the registry.
	d, _ := r.Lookup("mnist")
	d.Files[0].Sum = "tampered"
	d.Files[0].Mirrors[0] = "tampered"
	d2, _ := r.Lookup("mnist")
	if d2.Files[0].Sum == "tampered" || d2.Files[0].Mirrors[0] == "tampered" {
		t.Errorf("Lookup exposed the registry's internal slices")
	}
}

// TestBuiltinMatchesSharedData checks the registry's size and checksum against the
// copies in ../shared/data that are byte-identical to the upstream files.
func TestBuiltinMatchesSharedData(t *testing.T) {
	cases := []struct{ dataset, file, rel string }{
		{"tiny-shakespeare", "tinyshakespeare.txt", "char/tinyshakespeare.txt"},
		{"ptb", "ptb.train.txt", "eval/ptb/ptb.train.txt"},
		{"ptb", "ptb.valid.txt", "eval/ptb/ptb.valid.txt"},
		{"ptb", "ptb.test.txt", "eval/ptb/ptb.test.txt"},
	}
	r := Builtin()
	for _, c := range cases {
		p := sharedData(t, c.rel)
		d, _ := r.Lookup(c.dataset)
		var f File
		for _, x := range d.Files {
			if x.Name == c.file {
				f = x
			}
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := digestFile(p, f.Algo)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != f.Size || got != f.Sum {
			t.Errorf("%s/%s: shared copy is %d bytes %s %s; registry says %d bytes %s", c.dataset, c.file, fi.Size(), f.Algo, got, f.Size, f.Sum)
		}
	}
}

// sharedData locates a file of ../shared/data, skipping the test when it is absent.
func sharedData(t *testing.T, rel string) string { return testutil.SharedData(t, rel) }

func TestNewRegistryValidation(t *testing.T) {
	good := File{Name: "a.txt", URL: "https://example.org/a.txt", Size: 3, Algo: SHA256, Sum: strings.Repeat("ab", 32), Verified: true, Source: "somewhere"}
	with := func(mod func(*File)) []Dataset {
		f := good
		mod(&f)
		return []Dataset{{Name: "d", Files: []File{f}}}
	}
	cases := []struct {
		name string
		ds   []Dataset
		want string
	}{
		{"ok", with(func(*File) {}), ""},
		{"ok-unverified", with(func(f *File) { f.Sum, f.Verified, f.Size = "", false, 0 }), ""},
		{"ok-md5", with(func(f *File) { f.Algo, f.Sum = MD5, strings.Repeat("0f", 16) }), ""},
		{"dup-dataset", append(with(func(*File) {}), with(func(*File) {})...), "registered twice"},
		{"no-files", []Dataset{{Name: "d"}}, "no files"},
		{"bad-name", []Dataset{{Name: "a b", Files: []File{good}}}, "without spaces"},
		{"path-in-file-name", with(func(f *File) { f.Name = "../a.txt" }), "plain file name"},
		{"part-file-name", with(func(f *File) { f.Name = "a.part" }), "plain file name"},
		{"relative-url", with(func(f *File) { f.URL = "/a.txt" }), "not an absolute http(s) URL"},
		{"ftp-url", with(func(f *File) { f.URL = "ftp://example.org/a" }), "not an absolute http(s) URL"},
		{"bad-mirror", with(func(f *File) { f.Mirrors = []string{"file:///etc/passwd"} }), "not an absolute http(s) URL"},
		{"no-size", with(func(f *File) { f.Size = 0 }), "exact size"},
		{"short-sum", with(func(f *File) { f.Sum = "abc" }), "not 64 lower-case hex digits"},
		{"upper-sum", with(func(f *File) { f.Sum = strings.Repeat("AB", 32) }), "lower-case hex"},
		{"md5-length", with(func(f *File) { f.Algo = MD5 }), "not 32 lower-case hex digits"},
		{"bad-algo", with(func(f *File) { f.Algo = "crc32" }), "unknown checksum algorithm"},
		{"no-source", with(func(f *File) { f.Source = "" }), "Source"},
		{"sum-but-unverified", with(func(f *File) { f.Verified = false }), "Verified is false"},
		{"zip-mismatch", with(func(f *File) { f.Unpack = UnpackZip }), "needs a .zip"},
		{"gz-on-tar", with(func(f *File) { f.Name, f.Unpack = "a.tar.gz", UnpackGzip }), "single-file .gz"},
	}
	for _, c := range cases {
		_, err := NewRegistry(c.ds...)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want one containing %q", c.name, err, c.want)
		}
	}
	dupFiles := []Dataset{{Name: "d", Files: []File{good, good}}}
	if _, err := NewRegistry(dupFiles...); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("duplicate file: error = %v", err)
	}
}
