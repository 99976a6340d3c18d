package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Schema identifies the results files written by Save.
const Schema = "mdm-gpu/bench/1"

// Result kinds (one file per kind, device and machine: bench/results/<machine>/<kind>-….json).
const (
	KindCPUStep = "cpu-step"
	KindCheck   = "check"
	KindKernels = "kernels"
	KindStep    = "step"
	KindSample  = "sample"
)

// File is one results file.
type File struct {
	Schema  string          `json:"schema"`
	Kind    string          `json:"kind"`
	Machine Machine         `json:"machine"`
	Device  string          `json:"device"` // the backend measured, e.g. "cpu", "sim", "cuda:0 (NVIDIA H200)"
	Config  map[string]any  `json:"config,omitempty"`
	Notes   []string        `json:"notes,omitempty"`
	Results json.RawMessage `json:"results"`
}

// NewFile builds a results file of kind for results (any JSON-encodable value).
func NewFile(kind string, m Machine, device string, config map[string]any, results any, notes ...string) (File, error) {
	raw, err := json.Marshal(results)
	return File{Schema: Schema, Kind: kind, Machine: m, Device: device, Config: config, Notes: notes, Results: raw}, err
}

// Save writes f to root/<machine>/<kind>-<device kind>[-<BLAS>].json, the BLAS (gonum or
// openblas) for results measured on the CPU backend, replacing the previous result of
// that kind on that machine (the repository history keeps the old ones), and returns the
// path.
func Save(root string, f File) (string, error) {
	name := f.Kind
	if dk := deviceKind(f.Device); dk != "" {
		name += "-" + dk
		if dk == "cpu" && f.Machine.BLAS != "" {
			name += "-" + f.Machine.BLAS
		}
	}
	dir := filepath.Join(root, f.Machine.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name+".json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

// deviceKind returns "cpu", "sim" or "cuda" for a backend name.
func deviceKind(name string) string {
	switch {
	case name == "":
		return ""
	case strings.HasPrefix(name, "cuda"):
		return "cuda"
	case strings.HasPrefix(name, "sim"):
		return "sim"
	}
	return "cpu"
}

// LoadAll reads every results file under root, sorted by machine and kind.
func LoadAll(root string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var f File
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if f.Schema != Schema {
			return nil
		}
		out = append(out, f)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	slices.SortStableFunc(out, func(a, b File) int {
		if c := strings.Compare(a.Machine.Name, b.Machine.Name); c != 0 {
			return c
		}
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Device, b.Device)
	})
	return out, err
}

// ForReadme selects the results worth the README's short table: the CPU comparison with
// PyTorch and the numeric check everywhere, the other kinds only when measured on a GPU
// (simulated and CPU kernel timings only test the plumbing).
func ForReadme(files []File) []File {
	var out []File
	for _, f := range files {
		if f.Kind == KindCPUStep || f.Kind == KindCheck || deviceKind(f.Device) == "cuda" {
			out = append(out, f)
		}
	}
	return out
}

// machineCell is the table cell describing where a result was measured.
func machineCell(m Machine) string {
	s := fmt.Sprintf("%s, %d CPUs", m.CPU, m.CPUs)
	if m.GPU != "" {
		s = m.GPU
	}
	return s
}

func date(m Machine) string {
	if len(m.Date) >= 10 {
		return m.Date[:10]
	}
	return m.Date
}

func versionOf(v map[string]any, k string) string {
	if v == nil {
		return ""
	}
	if s, ok := v[k].(string); ok {
		return s
	}
	return ""
}

// Report renders every results file as markdown tables, one section per kind.
func Report(files []File) (string, error) {
	var b strings.Builder
	sections := []struct{ kind, title, intro string }{
		{KindCPUStep, "CPU training step: ours vs PyTorch, same thread count", "Tiny preset (V=27, L=128, D=128, 4 layers, 4 heads, MLP 352, adaLN Dc=64, batch 32, AdamW + EMA), one run per machine alternating rounds of our steps and PyTorch's; median (best) tokens/s; CPU time = user+system seconds per step. Ratio > 1: we are faster. Target: ≥ 1."},
		{KindCheck, "Numeric agreement with PyTorch", "One training step from the same weights (our safetensors state), batch and mask: relative differences (max over tensors of max|ours − PyTorch| / max|PyTorch|)."},
		{KindStep, "Training step throughput", "MFU = tokens/s × 6N + 12·layers·D·L FLOPs per token ÷ the bf16 peak."},
		{KindKernels, "Kernels", "Compute-bound kernels: TFLOP/s and % of the bf16 peak; memory-bound: GB/s, % of the HBM peak and of the copy kernel of the same run. On the simulator and the CPU these numbers only show that the plumbing works."},
		{KindSample, "Sampling", "Generated tokens per second and network calls (forward passes of a batch) per batch."},
	}
	for _, sec := range sections {
		var fs []File
		for _, f := range files {
			if f.Kind == sec.kind {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n%s\n\n", sec.title, sec.intro)
		if err := renderKind(&b, sec.kind, fs); err != nil {
			return "", err
		}
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		return "No results yet: run `mdm-gpu bench cpu-step` (or another bench command).\n", nil
	}
	return b.String(), nil
}

func renderKind(b *strings.Builder, kind string, fs []File) error {
	switch kind {
	case KindCPUStep:
		b.WriteString("| machine | threads | ours tok/s | PyTorch tok/s | ratio (median / best) | CPU s/step ours / PyTorch | GEMM | PyTorch | date |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range fs {
			var rs []CPUStepResult
			if err := json.Unmarshal(f.Results, &rs); err != nil {
				return err
			}
			for _, r := range rs {
				fmt.Fprintf(b, "| %s | %d | %.0f (%.0f) | %.0f (%.0f) | **%.2f** / %.2f | %.3f / %.3f | %s | %s | %s |\n",
					machineCell(f.Machine), r.Threads, r.Ours.TokensSec, r.Ours.BestTokS, r.Torch.TokensSec, r.Torch.BestTokS,
					r.Ratio, r.RatioB, r.Ours.CPUMedian, r.Torch.CPUMedian, f.Machine.BLAS, versionOf(r.Torchv, "torch"), date(f.Machine))
			}
		}
	case KindCheck:
		b.WriteString("| machine | shape | masked | loss ours / PyTorch (bits) | loss | grads (max) | grads (L2) | AdamW update | EMA | moments | PyTorch | date |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range fs {
			var a Agreement
			if err := json.Unmarshal(f.Results, &a); err != nil {
				return err
			}
			fmt.Fprintf(b, "| %s | %v | %d | %.7f / %.7f | %.1e | %.1e | %.1e | %.1e | %.1e | %.1e | %s | %s |\n",
				machineCell(f.Machine), f.Config["shape"], a.Masked, a.LossOurs, a.LossTorch, a.LossRel, a.GradRel, a.GradL2Rel,
				a.UpdateRel, a.EMARel, a.MomentRel, versionOf(a.Torch, "torch"), date(f.Machine))
		}
	case KindStep:
		b.WriteString("| machine | device | shape | batch | ours tok/s | MFU | PyTorch tok/s | ratio | date |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range fs {
			var r StepResult
			if err := json.Unmarshal(f.Results, &r); err != nil {
				return err
			}
			mfu, pt, ratio := "–", "–", "–"
			if r.MFU > 0 {
				mfu = fmt.Sprintf("%.1f%%", 100*r.MFU)
			}
			if r.Torch != nil && r.Torch.TokensSec > 0 {
				pt = fmt.Sprintf("%.0f", r.Torch.TokensSec)
				ratio = fmt.Sprintf("**%.2f**", r.Ours.TokensSec/r.Torch.TokensSec)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %d | %.0f | %s | %s | %s | %s |\n", machineCell(f.Machine), f.Device, r.Shape, r.Batch,
				r.Ours.TokensSec, mfu, pt, ratio, date(f.Machine))
		}
	case KindKernels:
		b.WriteString("| machine | device | kernel | shape | ms | TFLOP/s | GB/s | % peak | % copy | PyTorch ms | speedup |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range fs {
			var rs []KernelResult
			if err := json.Unmarshal(f.Results, &rs); err != nil {
				return err
			}
			for _, r := range rs {
				if r.Err != "" {
					fmt.Fprintf(b, "| %s | %s | %s | %s | %s | | | | | | |\n", machineCell(f.Machine), f.Device, r.Name, r.Shape, r.Err)
					continue
				}
				cell := func(v float64, f string) string {
					if v == 0 {
						return ""
					}
					return fmt.Sprintf(f, v)
				}
				fmt.Fprintf(b, "| %s | %s | %s | %s | %.3f | %s | %s | %s | %s | %s | %s |\n", machineCell(f.Machine), f.Device, r.Name, r.Shape,
					1e3*r.Seconds, cell(r.TFLOPs, "%.1f"), cell(r.GBps, "%.0f"), cell(r.PctPeak, "%.0f%%"), cell(r.PctCopy, "%.0f%%"),
					cell(1e3*r.Torch, "%.3f"), cell(r.Speedup, "%.2f×"))
			}
		}
	case KindSample:
		b.WriteString("| machine | device | sampler | mode | T | sequences × L | tok/s | network calls per batch | date |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range fs {
			var rs []SampleResult
			if err := json.Unmarshal(f.Results, &rs); err != nil {
				return err
			}
			for _, r := range rs {
				if r.Err != "" {
					fmt.Fprintf(b, "| %s | %s | %s | %s | %d | | %s | | %s |\n", machineCell(f.Machine), f.Device, r.Sampler, r.Mode, r.Steps, r.Err, date(f.Machine))
					continue
				}
				fmt.Fprintf(b, "| %s | %s | %s | %s | %d | %d × %d | %.0f | %.0f | %s |\n", machineCell(f.Machine), f.Device, r.Sampler, r.Mode,
					r.Steps, r.Sequences, r.SeqLen, r.TokensSec, r.NFEPerSeq, date(f.Machine))
			}
		}
	}
	return nil
}

// Markers delimit the generated results section of the README.
const (
	ReadmeBegin = "<!-- bench:begin (generated by `mdm-gpu bench report`; do not edit by hand) -->"
	ReadmeEnd   = "<!-- bench:end -->"
)

// UpdateReadme replaces the text between ReadmeBegin and ReadmeEnd in the file at path
// with table. It fails, changing nothing, if the markers are missing.
func UpdateReadme(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, ReadmeBegin), strings.Index(s, ReadmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q section to update", path, ReadmeBegin, ReadmeEnd)
	}
	s = s[:i+len(ReadmeBegin)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
