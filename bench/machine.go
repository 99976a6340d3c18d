package bench

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Machine describes where a result was measured.
type Machine struct {
	Name      string   `json:"name"` // results folder: a slug of the CPU or GPU model
	Host      string   `json:"host"`
	CPU       string   `json:"cpu"`
	CPUs      int      `json:"cpus"`  // logical CPUs the process may use
	Flags     []string `json:"flags"` // the SIMD extensions that matter for GEMM
	GPU       string   `json:"gpu,omitempty"`
	OS        string   `json:"os"`
	Go        string   `json:"go"`
	BLAS      string   `json:"blas"` // the CPU backend's GEMM: gonum or openblas
	Commit    string   `json:"commit,omitempty"`
	Date      string   `json:"date"`
	LoadStart []string `json:"load_average_start,omitempty"` // /proc/loadavg when the run started
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

// Slug turns a model name into a folder name: "AMD EPYC 9R14" → "amd-epyc-9r14".
func Slug(s string) string {
	s = strings.Trim(slugRE.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if s == "" {
		return "unknown"
	}
	return s
}

// ThisMachine describes the current machine; blas is the CPU backend's BLAS name and gpu
// the GPU's name ("" for none).
func ThisMachine(blas, gpu string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), BLAS: blas,
		GPU: gpu, Date: time.Now().UTC().Format(time.RFC3339)}
	m.Host, _ = os.Hostname()
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				if m.CPU == "" {
					m.CPU = strings.TrimSpace(v)
				}
			case "flags":
				if m.Flags == nil {
					for _, fl := range strings.Fields(v) {
						switch fl {
						case "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16":
							m.Flags = append(m.Flags, fl)
						}
					}
				}
			}
		}
		f.Close()
	}
	if m.CPU == "" {
		m.CPU = runtime.GOARCH
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadStart = strings.Fields(string(b))[:3]
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				m.Commit = s.Value
			}
		}
	}
	if m.Commit == "" {
		if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
			m.Commit = strings.TrimSpace(string(out))
		}
	}
	m.Name = Slug(m.CPU)
	if gpu != "" {
		m.Name = Slug(gpu)
	}
	return m
}

// LoadAverage returns the 1-, 5- and 15-minute load averages (nil where unknown).
func LoadAverage() []string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))[:3]
}
