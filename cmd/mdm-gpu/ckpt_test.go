package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/ckpt"
	"gorgonia.org/tensor"
)

var (
	refOnce sync.Once
	refRoot string // removed by TestMain
	refDir  string
	refData string
)

// refRun trains one small run (char tokenizer, EMA) shared by the checkpoint, sample and
// eval tests; it lives until the test binary exits.
func refRun(t *testing.T) (ckptPath, data string) {
	t.Helper()
	refOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mdm-gpu-ref-*")
		if err != nil {
			t.Fatal(err)
		}
		refRoot = dir
		refData = writeCorpus(t, filepath.Join(dir, "corpus.txt"), 20000, 9)
		out := filepath.Join(dir, "run")
		if r := cli(t, tinyArgs(refData, out, "--steps", "3", "--tokenizer", "char")...); r.code != 0 {
			t.Fatalf("reference run: %v", r)
		}
		refDir = out
	})
	if refDir == "" {
		t.Fatal("reference run failed earlier")
	}
	return filepath.Join(refDir, checkpointName), refData
}

// rewrite loads every tensor of src, lets edit change them, and saves the result (with
// fresh, self-consistent ckpt fingerprints) to a new file.
func rewrite(t *testing.T, src string, edit func(map[string]*tensor.Dense)) string {
	t.Helper()
	ts, meta := loadAll(t, src)
	edit(ts)
	for k := range meta {
		if strings.HasPrefix(k, ckpt.MetaPrefix) {
			delete(meta, k)
		}
	}
	var named []ckpt.Named
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		named = append(named, ckpt.Named{Name: n, T: ts[n]})
	}
	dst := filepath.Join(t.TempDir(), "edited.safetensors")
	if err := ckpt.Save(dst, named, meta); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestCorruptCheckpointsRefused: a checkpoint with a renamed, missing, extra or misshapen
// tensor, or a truncated one, is refused by eval, sample and train --resume with a message
// naming the problem.
func TestCorruptCheckpointsRefused(t *testing.T) {
	good, data := refRun(t)
	cases := []struct {
		name string
		path func(t *testing.T) string
		want []string
	}{
		{"renamed", func(t *testing.T) string {
			return rewrite(t, good, func(ts map[string]*tensor.Dense) {
				ts["ema.head.weights"] = ts["ema.head.weight"]
				delete(ts, "ema.head.weight")
			})
		}, []string{"ema.head.weight", "ema.head.weights"}},
		{"missing", func(t *testing.T) string {
			return rewrite(t, good, func(ts map[string]*tensor.Dense) { delete(ts, "blocks.0.attn.q.weight") })
		}, []string{"blocks.0.attn.q.weight", "missing"}},
		{"extra", func(t *testing.T) string {
			return rewrite(t, good, func(ts map[string]*tensor.Dense) {
				ts["blocks.7.attn.q.weight"] = tensor.New(tensor.WithShape(2, 2), tensor.WithBacking([]float32{1, 2, 3, 4}))
			})
		}, []string{"blocks.7.attn.q.weight"}},
		{"misshapen", func(t *testing.T) string {
			return rewrite(t, good, func(ts map[string]*tensor.Dense) {
				d := ts["ema.token_embed.weight"]
				shape := d.Shape()
				ts["ema.token_embed.weight"] = tensor.New(tensor.WithShape(shape[1], shape[0]), tensor.WithBacking(d.Data()))
			})
		}, []string{"ema.token_embed.weight", "shape"}},
		{"truncated", func(t *testing.T) string {
			b, err := os.ReadFile(good)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "truncated.safetensors")
			os.WriteFile(p, b[:len(b)*2/3], 0o644)
			return p
		}, []string{"truncated"}},
		{"not a checkpoint", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "text.safetensors")
			os.WriteFile(p, []byte("hello, this is not a checkpoint at all"), 0o644)
			return p
		}, []string{"not a safetensors file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.path(t)
			check := func(what string, r result) {
				t.Helper()
				if r.code == 0 {
					t.Fatalf("%s accepted the %s checkpoint: %v", what, c.name, r)
				}
				t.Logf("%s: %s", what, r.stderr)
				for _, w := range c.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%s: message lacks %q:\n%s", what, w, r.stderr)
					}
				}
			}
			check("sample", cli(t, "sample", "--checkpoint", p, "--steps", "2"))
			check("eval", cli(t, "eval", "--checkpoint", p, "--data", data))
			// train --resume reads DIR/checkpoint.safetensors.
			dir := t.TempDir()
			b, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(dir, checkpointName), b, 0o644)
			before := dirState(t, dir)
			check("train --resume", cli(t, "train", "--out", dir, "--resume", "--data", data))
			if !sameState(before, dirState(t, dir)) {
				t.Error("the refused resume changed the run directory")
			}
		})
	}
}
