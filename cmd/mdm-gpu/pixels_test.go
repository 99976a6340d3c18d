package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
)

// writeIDX writes n synthetic h×w grey images (a bright horizontal or vertical bar on a
// dark, slightly noisy background) as an IDX image file (magic 0x00000803).
func writeIDX(t *testing.T, path string, n, h, w int, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{0x803, uint32(n), uint32(h), uint32(w)})
	for range n {
		vertical, at := r.IntN(2) == 0, r.IntN(min(h, w))
		for y := range h {
			for x := range w {
				v := r.IntN(24)
				if (vertical && x == at) || (!vertical && y == at) {
					v = 200 + r.IntN(56)
				}
				b.WriteByte(byte(v))
			}
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pixelArgs is a tiny pixel-token model.
func pixelArgs(dataArg, out string, extra ...string) []string {
	args := []string{"train", "--data", dataArg, "--out", out, "--dim", "16", "--layers", "1", "--heads", "2", "--mlp-hidden", "32",
		"--cond-dim", "8", "--batch", "8", "--warmup", "2", "--lr", "5e-3", "--ema", "0.9", "--eval-batch", "16", "--eval-every", "0",
		"--ckpt-every", "0", "--threads", "2", "--log-every", "5"}
	return append(args, extra...)
}

// TestPixelModel: a pixel-token model on synthetic IDX images (the last images held out):
// L is set from the images, the step-0 bound is (1−ε)·8 bits per dimension, training
// lowers it, eval reports bits/dim, and sample writes a PNG grid of the right size with no
// mask left; data of another shape is refused.
func TestPixelModel(t *testing.T) {
	dir := t.TempDir()
	idx := writeIDX(t, filepath.Join(dir, "bars-images-idx3-ubyte"), 200, 8, 8, 1)
	out := filepath.Join(dir, "run")
	r := mustCLI(t, pixelArgs(idx, out, "--steps", "30", "--held-out", "0.2", "--eval-windows", "32")...)
	for _, want := range []string{"step 0: validation bound (ema weights)", "bits/dim", "32 of 40 evaluation images", "8x8x1 = 64 dimensions"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, r.stdout)
		}
	}
	ck := filepath.Join(out, checkpointName)
	rm, err := readRunMeta(ck)
	if err != nil {
		t.Fatal(err)
	}
	if !rm.Model.Pixels() || rm.Model.PixelH != 8 || rm.Model.PixelW != 8 || rm.Model.PixelC != 1 || rm.Model.SeqLen != 64 ||
		rm.Model.Vocab != 256 || rm.Tok.Name() != "pixels" || rm.Config.Tokenizer != "pixels" {
		t.Fatalf("checkpoint model %+v, tokenizer %s", rm.Model, rm.Tok.Name())
	}
	var info dataInfo
	json.Unmarshal([]byte(rm.Raw[metaData]), &info)
	if info.Kind != kindImages || info.Image == nil || info.Image.TrainImages != 160 || info.Image.EvalImages != 40 || info.BlockSize != 64 {
		t.Errorf("data protocol %+v (image %+v)", info, info.Image)
	}
	first, last := rm.History.Eval[0], rm.History.Eval[len(rm.History.Eval)-1]
	if b, se := float64(first.PaperCode), float64(first.PaperCodeSE); !(math.Abs(b-(1-1e-4)*8) < 4*se+0.05) {
		t.Errorf("step-0 bound %v ± %v bits/dim, want ≈ (1−ε)·8 = 7.9992 (the uniform model)", b, se)
	}
	if last.Weights != "raw" || !(float64(last.PaperCode) < 7) {
		t.Errorf("after 30 steps the raw bound is %v bits/dim (%s); want below the uniform 8", last.PaperCode, last.Weights)
	}
	t.Logf("synthetic bars 8x8: %v → %v bits/dim (raw weights)", first.PaperCode, last.PaperCode)

	r = mustCLI(t, "eval", "--checkpoint", ck, "--no-ema", "--windows", "20")
	for _, want := range []string{"the run's evaluation images", "20 of 40 images", "bits/dim", "8x8x1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, r.stdout)
		}
	}

	grid := filepath.Join(dir, "grid.png")
	r = mustCLI(t, "sample", "--checkpoint", ck, "--no-ema", "--num", "5", "--steps", "16", "--png", grid, "--png-scale", "3", "--json")
	o := decodeSamples(t, r)
	if len(o.Samples) != 5 || o.Report.PNG != grid {
		t.Fatalf("%d samples, png %q", len(o.Samples), o.Report.PNG)
	}
	for k, s := range o.Samples {
		for i, v := range s.IDs {
			if v < 0 || v > 255 {
				t.Fatalf("sample %d position %d holds %d: not a pixel value (the mask is 256)", k, i, v)
			}
		}
	}
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("%s: %v", grid, err)
	}
	// 5 images → 3 columns, 2 rows of 8·3 pixels with 2-pixel gaps.
	if b := img.Bounds(); b.Dx() != 2+3*(24+2) || b.Dy() != 2+2*(24+2) {
		t.Errorf("grid is %dx%d, want %dx%d", b.Dx(), b.Dy(), 2+3*26, 2+2*26)
	}
	// The grid shows the samples: pixel (row 1, col 2) of sample 4 (second row, second column).
	g, ok := img.(*image.Gray)
	if !ok {
		t.Fatalf("grid is %T, want an 8-bit grey image", img)
	}
	if got, want := g.GrayAt(2+26+2*3+1, 2+26+1*3+2).Y, o.Samples[4].IDs[1*8+2]; int32(got) != want {
		t.Errorf("grid pixel %d, sample value %d", got, want)
	}
	r = mustCLI(t, "sample", "--checkpoint", ck, "--num", "2", "--steps", "4")
	if want := filepath.Join(out, "samples.png"); !strings.Contains(r.stdout, want) || !fileExists(want) {
		t.Errorf("default PNG %s not written:\n%s", want, r.stdout)
	}

	// Images of another shape are refused by eval, naming both shapes.
	other := writeIDX(t, filepath.Join(dir, "big-images-idx3-ubyte"), 4, 10, 10, 2)
	r = cli(t, "eval", "--checkpoint", ck, "--data", other)
	if r.code == 0 || !strings.Contains(r.stderr, "10×10×1") || !strings.Contains(r.stderr, "8x8x1") || !strings.Contains(r.stderr, "tokenizer mismatch") {
		t.Errorf("eval on 10x10 images: %v", r)
	}
}

// TestPixelModelMNIST: the named dataset (files found in --data-dir, the test split for
// evaluation), centre-cropped and pooled to 5x5 for speed.
func TestPixelModelMNIST(t *testing.T) {
	dir := testutil.SharedData(t, "images/mnist")
	out := filepath.Join(t.TempDir(), "run")
	r := mustCLI(t, pixelArgs("mnist", out, "--data-dir", dir, "--image-crop", "20x20", "--image-downscale", "4", "--steps", "10",
		"--eval-windows", "64")...)
	for _, want := range []string{"64 of 3000 evaluation images (test:", "mnist-t10k-first3000-images-idx3-ubyte.gz", "5x5x1 = 25 dimensions", "bits/dim"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, r.stdout)
		}
	}
	rm, err := readRunMeta(filepath.Join(out, checkpointName))
	if err != nil || rm.Model.SeqLen != 25 || rm.Model.PixelH != 5 {
		t.Fatalf("checkpoint: %v %+v", err, rm.Model)
	}
	if last := rm.History.Eval[len(rm.History.Eval)-1]; !(float64(last.PaperCode) < 8) {
		t.Errorf("MNIST 5x5 raw bound after 10 steps: %v bits/dim, want below 8", last.PaperCode)
	}
	tok, _ := data.NewPixels(5, 5, 1)
	if rm.TokFP != tok.Fingerprint() {
		t.Errorf("tokenizer fingerprint %s, want the 5x5x1 pixel tokenizer's", rm.TokFP)
	}
}

// TestPixelModelCIFAR10: CIFAR-10 binary batches (the shared subset), channels innermost,
// an RGB PNG grid.
func TestPixelModelCIFAR10(t *testing.T) {
	dir := testutil.SharedData(t, "images/cifar10-lossless-subset")
	out := filepath.Join(t.TempDir(), "run")
	r := mustCLI(t, pixelArgs("cifar10", out, "--data-dir", dir, "--image-crop", "16x16", "--image-downscale", "4", "--steps", "3",
		"--eval-windows", "16")...)
	for _, want := range []string{"16 of 1000 evaluation images (test:", "cifar10_test_first1000.bin", "4x4x3 = 48 dimensions", "bits/dim"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, r.stdout)
		}
	}
	grid := filepath.Join(t.TempDir(), "cifar.png")
	mustCLI(t, "sample", "--checkpoint", filepath.Join(out, checkpointName), "--num", "4", "--steps", "4", "--png", grid, "--png-scale", "2")
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.(*image.Gray); ok || img.Bounds().Dx() != 2+2*(8+2) {
		t.Errorf("grid %T of %v, want an RGB image %d pixels wide", img, img.Bounds(), 2+2*10)
	}
}
