//go:build cuda

package cuda

import (
	"embed"
	"io/fs"
	"path"
	"strings"
)

// The kernel fatbins are embedded in the CUDA build: cmake (CMakeLists.txt) writes one
// fatbin per kernels/<family>.cu into cuda/kernelsbin/ (gitignored), and go:embed cannot
// reach outside the package directory (go-cuda-notes.md §1.7).
//
// The directory is embedded rather than the pattern kernelsbin/*.fatbin: the tracked
// kernelsbin/README.md keeps the embed valid before cmake has run, so `go vet -tags cuda`
// and editors work on a fresh checkout. A binary built without fatbins is caught at run
// time (NewRealDevice returns ErrNoKernels) and before shipping (bench/gpu-pack.sh and
// scripts/ci-cuda.sh build the fatbins first and check they are there).
//
//go:embed kernelsbin
var kernelsFS embed.FS

// embeddedFatbins returns the embedded fatbins by family name ("attention_fwd", …).
func embeddedFatbins() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(kernelsFS, "kernelsbin", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".fatbin") {
			return err
		}
		b, err := kernelsFS.ReadFile(p)
		if err != nil {
			return err
		}
		out[strings.TrimSuffix(path.Base(p), ".fatbin")] = b
		return nil
	})
	return out, err
}
