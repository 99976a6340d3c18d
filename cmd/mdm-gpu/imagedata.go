package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/engine/data/fetch"
)

// Image data for pixel-token models (issue 7): MNIST and Fashion-MNIST (IDX files) and
// CIFAR-10 (binary batches), optionally centre-cropped and average-pooled, as sequences of
// H·W·C pixel tokens (values 0…255, mask 256) in raster order with channels innermost.

// imgShape is an image shape.
type imgShape struct{ H, W, C int }

func (s imgShape) String() string { return fmt.Sprintf("%dx%dx%d", s.H, s.W, s.C) }

// imageInfo describes the images of a run (in dataInfo).
type imageInfo struct {
	Dataset     string `json:"dataset,omitempty"`
	H           int    `json:"h"`
	W           int    `json:"w"`
	C           int    `json:"c"`
	SourceH     int    `json:"source_h"`
	SourceW     int    `json:"source_w"`
	Crop        string `json:"crop,omitempty"`
	Downscale   int    `json:"downscale"`
	TrainFile   string `json:"train_file"`
	EvalFile    string `json:"eval_file"`
	TrainImages int    `json:"train_images"`
	EvalImages  int    `json:"eval_images"`
	EvalSplit   string `json:"eval_split"`
}

// imageDatasets are the image datasets --data may name, with their native shapes.
var imageDatasets = map[string]imgShape{"mnist": {28, 28, 1}, "fashion-mnist": {28, 28, 1}, "cifar10": {32, 32, 3}}

// imageDatasetName returns the dataset --data names ("" when it is not a dataset name or
// a file of that name exists).
func imageDatasetName(path string) string {
	n := strings.ToLower(strings.TrimSpace(path))
	if _, ok := imageDatasets[n]; !ok {
		return ""
	}
	if _, err := os.Stat(path); err == nil {
		return ""
	}
	return n
}

// parseCrop parses --image-crop "HxW" ("" = no crop).
func parseCrop(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	hs, ws, ok := strings.Cut(strings.ToLower(s), "x")
	h, err1 := strconv.Atoi(strings.TrimSpace(hs))
	w, err2 := strconv.Atoi(strings.TrimSpace(ws))
	if !ok || err1 != nil || err2 != nil || h < 1 || w < 1 {
		return 0, 0, fmt.Errorf("--image-crop %q: want HxW with positive integers, e.g. 20x20", s)
	}
	return h, w, nil
}

// presetImageShape is the shape of a preset's images after crop and downscale (for the
// preset table; false when the preset does not name an image dataset).
func presetImageShape(c RunConfig) (imgShape, bool) {
	sh, ok := imageDatasets[c.Data]
	if !ok {
		return imgShape{}, false
	}
	if h, w, err := parseCrop(c.ImageCrop); err == nil && h > 0 {
		sh.H, sh.W = h, w
	}
	if k := max(c.ImageDownscale, 1); sh.H%k == 0 && sh.W%k == 0 {
		sh.H, sh.W = sh.H/k, sh.W/k
	}
	return sh, true
}

// transformImages centre-crops to cropH×cropW (0 = no crop) and then average-pools k×k
// blocks (rounding to the nearest value; k = 1: none).
func transformImages(s *data.ImageSet, cropH, cropW, k int) (*data.ImageSet, error) {
	if cropH == 0 {
		cropH, cropW = s.H, s.W
	}
	if cropH > s.H || cropW > s.W {
		return nil, fmt.Errorf("--image-crop %dx%d is larger than the %dx%d images of %s", cropH, cropW, s.H, s.W, s.Source)
	}
	k = max(k, 1)
	if cropH%k != 0 || cropW%k != 0 {
		return nil, fmt.Errorf("--image-downscale %d must divide the (cropped) image size %dx%d of %s; choose a divisor or change --image-crop", k, cropH, cropW, s.Source)
	}
	if cropH == s.H && cropW == s.W && k == 1 {
		return s, nil
	}
	top, left := (s.H-cropH)/2, (s.W-cropW)/2
	H, W, C := cropH/k, cropW/k, s.C
	out := &data.ImageSet{N: s.N, H: H, W: W, C: C, Pixels: make([]uint8, s.N*H*W*C), Labels: s.Labels, Source: s.Source}
	area := k * k
	for i := range s.N {
		src, dst := s.Image(i), out.Image(i)
		for r := range H {
			for c := range W {
				for ch := range C {
					sum := 0
					for dy := range k {
						for dx := range k {
							sum += int(src[data.PixelIndex(top+r*k+dy, left+c*k+dx, ch, s.W, C)])
						}
					}
					dst[data.PixelIndex(r, c, ch, W, C)] = uint8((sum + area/2) / area)
				}
			}
		}
	}
	return out, nil
}

// readImageFile reads an IDX image file or CIFAR-10 binary file (format "idx", "cifar10"
// or "" to decide from the name).
func readImageFile(path, format string) (*data.ImageSet, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("image file %s: %w", path, errors.Unwrap(err))
	} else if fi.IsDir() {
		return nil, fmt.Errorf("image file %s: is a directory; pass an IDX or CIFAR-10 .bin file, or --data mnist|fashion-mnist|cifar10 with --data-dir", path)
	}
	if format == "" || format == "auto" || format == "images" {
		format = "idx"
		if strings.HasSuffix(strings.ToLower(path), ".bin") {
			format = "cifar10"
		}
	}
	if format == "cifar10" {
		return data.ReadCIFAR10(path)
	}
	return data.ReadIDXImages(path)
}

// defaultDatasetDir is where 'mdm-gpu data fetch NAME' puts a dataset.
func defaultDatasetDir(name string) string {
	root, err := fetch.DefaultRoot()
	if err != nil {
		return name
	}
	return filepath.Join(root, name)
}

// debianFashionMNIST is where Debian's dataset-fashion-mnist package installs the files.
const debianFashionMNIST = "/usr/share/datasets/fashion-mnist"

// globFirst returns the sorted matches of the patterns under dir (first pattern first).
func globAll(dir string, patterns ...string) []string {
	var out []string
	for _, p := range patterns {
		m, _ := filepath.Glob(filepath.Join(dir, p))
		sort.Strings(m)
		for _, f := range m {
			if fi, err := os.Stat(f); err == nil && !fi.IsDir() && !strings.HasSuffix(f, ".tmp") {
				out = append(out, f)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// datasetFiles finds the training and test files of a named image dataset in dir.
func datasetFiles(name, dir string) (train, test []string, err error) {
	switch name {
	case "mnist", "fashion-mnist":
		train = globAll(dir, "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "*train*images*idx3*")
		test = globAll(dir, "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte", "*t10k*images*idx3*", "*test*images*idx3*")
		if len(train) > 1 {
			train = train[:1]
		}
		if len(test) > 1 {
			test = test[:1]
		}
	case "cifar10":
		for _, sub := range []string{"", "cifar-10-batches-bin"} {
			d := filepath.Join(dir, sub)
			if train == nil {
				train = globAll(d, "data_batch_*.bin", "*train*.bin")
			}
			if test == nil {
				test = globAll(d, "test_batch.bin", "*test*.bin")
			}
		}
		if train == nil && test == nil {
			if tgz := filepath.Join(dir, "cifar-10-binary.tar.gz"); fileExists(tgz) {
				if err := extractCIFAR(tgz, dir); err != nil {
					return nil, nil, err
				}
				return datasetFiles(name, dir)
			}
		}
	}
	if train == nil || test == nil {
		what := map[string]string{"mnist": "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]",
			"fashion-mnist": "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]",
			"cifar10":       "data_batch_*.bin and test_batch.bin (or cifar-10-binary.tar.gz)"}[name]
		return nil, nil, fmt.Errorf("--data %s: the dataset's files (%s) are not in %s; run 'mdm-gpu data fetch %s' or point --data-dir at the directory that holds them",
			name, what, dir, name)
	}
	return train, test, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// extractCIFAR unpacks the .bin batches of CIFAR-10's binary tarball into
// dir/cifar-10-batches-bin (once).
func extractCIFAR(tgz, dir string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	out := filepath.Join(dir, "cifar-10-batches-bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("unpacking %s: %w", tgz, err)
	}
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tgz, err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".bin") {
			continue
		}
		target := filepath.Join(out, filepath.Base(h.Name))
		tmp := target + ".tmp"
		w, err := os.Create(tmp)
		if err != nil {
			return fmt.Errorf("unpacking %s: %w", tgz, err)
		}
		_, err = io.Copy(w, tr)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, target)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("unpacking %s: %w", tgz, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s holds no .bin batches; is it cifar-10-binary.tar.gz?", tgz)
	}
	return nil
}

// loadImageSets reads a run's training images (unless !needTrain) and evaluation images,
// cropped and pooled as the configuration says.
func loadImageSets(cfg *RunConfig, needTrain bool) (train, eval *data.ImageSet, info imageInfo, err error) {
	cropH, cropW, err := parseCrop(cfg.ImageCrop)
	if err != nil {
		return nil, nil, info, err
	}
	k := max(cfg.ImageDownscale, 1)
	info.Crop, info.Downscale = cfg.ImageCrop, k
	format := cfg.DataFormat
	if name := imageDatasetName(cfg.Data); name != "" {
		dir := cfg.DataDir
		if dir == "" {
			dir = defaultDatasetDir(name)
			if name == "fashion-mnist" {
				if _, _, e := datasetFiles(name, dir); e != nil && fileExists(filepath.Join(debianFashionMNIST, "train-images-idx3-ubyte.gz")) {
					dir = debianFashionMNIST
				}
			}
		}
		trainFiles, testFiles, err := datasetFiles(name, dir)
		if err != nil {
			return nil, nil, info, err
		}
		info.Dataset, info.TrainFile, info.EvalFile, info.EvalSplit = name, strings.Join(trainFiles, ", "), testFiles[0], "test"
		if needTrain {
			if name == "cifar10" {
				train, err = data.ReadCIFAR10(trainFiles...)
			} else {
				train, err = data.ReadIDXImages(trainFiles[0])
			}
			if err != nil {
				return nil, nil, info, err
			}
		}
		if cfg.EvalData != "" {
			info.EvalFile, info.EvalSplit = cfg.EvalData, "--eval-data"
			eval, err = readImageFile(cfg.EvalData, "")
		} else if name == "cifar10" {
			eval, err = data.ReadCIFAR10(testFiles...)
		} else {
			eval, err = data.ReadIDXImages(testFiles[0])
		}
		if err != nil {
			return nil, nil, info, err
		}
	} else {
		if format == "images" {
			format = ""
		}
		all, err := readImageFile(cfg.Data, format)
		if err != nil {
			return nil, nil, info, err
		}
		info.TrainFile = cfg.Data
		if cfg.EvalData != "" {
			train = all
			info.EvalFile, info.EvalSplit = cfg.EvalData, "--eval-data"
			if eval, err = readImageFile(cfg.EvalData, format); err != nil {
				return nil, nil, info, err
			}
		} else {
			nHeld := int(float64(all.N)*cfg.HeldOut + 0.5)
			nHeld = max(1, nHeld)
			if all.N-nHeld < 1 {
				return nil, nil, info, fmt.Errorf("--data %s holds %d image(s): too few to hold out %g for evaluation and train on the rest; pass --eval-data or more images", cfg.Data, all.N, cfg.HeldOut)
			}
			train, _ = all.Sub(0, all.N-nHeld)
			eval, _ = all.Sub(all.N-nHeld, nHeld)
			info.EvalFile, info.EvalSplit = cfg.Data, fmt.Sprintf("last %d images (--held-out %g)", nHeld, cfg.HeldOut)
		}
	}
	ref := eval
	if train != nil {
		ref = train
		if train.H != eval.H || train.W != eval.W || train.C != eval.C {
			return nil, nil, info, fmt.Errorf("%w: the training images (%s) are %dx%dx%d but the evaluation images (%s) are %dx%dx%d",
				data.ErrTokenizerMismatch, train.Source, train.H, train.W, train.C, eval.Source, eval.H, eval.W, eval.C)
		}
		if train, err = transformImages(train, cropH, cropW, k); err != nil {
			return nil, nil, info, err
		}
		info.TrainImages = train.N
	}
	info.SourceH, info.SourceW = ref.H, ref.W
	if eval, err = transformImages(eval, cropH, cropW, k); err != nil {
		return nil, nil, info, err
	}
	info.H, info.W, info.C, info.EvalImages = eval.H, eval.W, eval.C, eval.N
	return train, eval, info, nil
}

// selectImages returns the pixel tokens of at most max (0 = all) evenly spaced images.
func selectImages(s *data.ImageSet, max int) ([]int32, int) {
	n := s.N
	k := n
	if max > 0 && max < n {
		k = max
	}
	L := s.Dim()
	out := make([]int32, k*L)
	for i := range k {
		s.Read(out[i*L:(i+1)*L], int64((i*n/k)*L))
	}
	return out, k
}

// pixelEntropy is the unigram entropy (bits) of the pixel values.
func pixelEntropy(s *data.ImageSet) float64 {
	counts := map[int32]int64{}
	var hist [256]int64
	for _, v := range s.Pixels {
		hist[v]++
	}
	for v, c := range hist {
		if c > 0 {
			counts[int32(v)] = c
		}
	}
	return entropyOfCounts(counts, int64(len(s.Pixels)))
}

// imageFingerprint hashes the shape and pixels of a set.
func imageFingerprint(s *data.ImageSet) string {
	h := sha256.New()
	fmt.Fprintf(h, "mdm-gpu images v1\x00%dx%dx%d\x00%d\x00", s.H, s.W, s.C, s.N)
	h.Write(s.Pixels)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// openImageData opens the images of a training run.
func openImageData(cfg *RunConfig, src configSource) (*runData, error) {
	if cfg.Tokenizer != "pixels" {
		if src.explicit("tokenizer") {
			return nil, fmt.Errorf("--tokenizer %s: %w: image data is modelled as pixel tokens (V=256, mask 256); drop --tokenizer or pass --tokenizer pixels",
				cfg.Tokenizer, data.ErrTokenizerMismatch)
		}
		cfg.Tokenizer = "pixels"
	}
	if imageDatasetName(cfg.Data) == "" {
		cfg.Data, _ = filepath.Abs(cfg.Data) // stored in the checkpoint: --resume works from any directory
	} else if cfg.DataDir != "" {
		cfg.DataDir, _ = filepath.Abs(cfg.DataDir)
	}
	if cfg.EvalData != "" {
		cfg.EvalData, _ = filepath.Abs(cfg.EvalData)
	}
	train, eval, info, err := loadImageSets(cfg, true)
	if err != nil {
		return nil, err
	}
	sh := imgShape{train.H, train.W, train.C}
	L := train.Dim()
	if cfg.SeqLen != L {
		if src.explicit("seq-len") {
			return nil, fmt.Errorf("--seq-len %d: the images are %s = %d pixel tokens per sequence; drop --seq-len (it is set from the images) or change --image-crop / --image-downscale",
				cfg.SeqLen, sh, L)
		}
		cfg.SeqLen = L
	}
	tok, err := data.NewPixels(sh.H, sh.W, sh.C)
	if err != nil {
		return nil, err
	}
	d := &runData{Kind: kindImages, Tok: tok, Shape: &sh, Unit: "bits/dim"}
	if d.TokJSON, err = tokenizerJSON(tok); err != nil {
		return nil, err
	}
	pw, err := data.NewPackedWindows(train, L, data.PackBlocks)
	if err != nil {
		return nil, fmt.Errorf("the training images of %s: %w", cfg.Data, err)
	}
	d.Rows = pw
	d.EvalSeqs, d.EvalN = selectImages(eval, cfg.EvalWindows)
	d.EvalDesc = fmt.Sprintf("%d of %d evaluation images (%s: %s) × %s = %d dimensions each, %d time sample(s) each",
		d.EvalN, eval.N, info.EvalSplit, info.EvalFile, sh, L, cfg.EvalSamples)
	d.Entropy = pixelEntropy(train)
	var source string
	if info.Dataset != "" {
		source = info.Dataset + " in " + filepath.Dir(strings.Split(info.TrainFile, ", ")[0])
	} else {
		source, _ = filepath.Abs(cfg.Data)
	}
	fp := imageFingerprint(train)
	d.Corpus = corpusMeta{Path: source, Format: "images", Fingerprint: fp, Tokens: (train.N + eval.N) * L, TrainTokens: train.N * L,
		HeldOutTokens: eval.N * L, UnigramEntropy: jfloat(d.Entropy)}
	d.Info = dataInfo{Kind: kindImages, Source: source, Tokenizer: tok.Name(), TokenizerFingerprint: tok.Fingerprint(), EOS: -1,
		EOSPolicy: "none: one image per sequence", Pack: "whole images (one per sequence, drawn uniformly with replacement)", BlockSize: L,
		Image: &info, Eval: info.EvalSplit + ": " + info.EvalFile}
	d.logLines = func(log zerolog.Logger) {
		log.Info().Str("data", source).Str("train_file", info.TrainFile).Str("eval_file", info.EvalFile).Str("eval_split", info.EvalSplit).
			Str("shape", sh.String()).Int("source_h", info.SourceH).Int("source_w", info.SourceW).Str("crop", info.Crop).Int("downscale", info.Downscale).
			Int("train_images", train.N).Int("eval_images", eval.N).Int("eval_selected", d.EvalN).Int("L", L).
			Float64("train_unigram_entropy_bits", round4(d.Entropy)).Str("fingerprint", fp).Msg("images (pixel tokens, V=256, mask 256)")
	}
	return d, nil
}

// imageEvalData is what 'eval' scores for a pixel checkpoint: the run's evaluation images,
// or every image of --data FILE, cropped and pooled as in training.
func imageEvalData(rm *runMeta, path string, windows int) (*evalData, error) {
	cfg := rm.Config
	cfg.normalize()
	var set *data.ImageSet
	what := ""
	if path != "" {
		s, err := readImageFile(path, "")
		if err != nil {
			return nil, err
		}
		ch, cw, err := parseCrop(cfg.ImageCrop)
		if err != nil {
			return nil, err
		}
		if set, err = transformImages(s, ch, cw, cfg.ImageDownscale); err != nil {
			return nil, err
		}
		what = "all images of " + path
	} else {
		_, eval, info, err := loadImageSets(&cfg, false)
		if err != nil {
			return nil, fmt.Errorf("the run's evaluation images: %w (pass --data FILE to evaluate another image file)", err)
		}
		set = eval
		what = fmt.Sprintf("the run's evaluation images (%s: %s)", info.EvalSplit, info.EvalFile)
	}
	tok, _ := data.NewPixels(rm.Model.PixelH, rm.Model.PixelW, rm.Model.PixelC)
	if err := tok.CheckShape(set); err != nil {
		return nil, fmt.Errorf("cannot evaluate the checkpoint: %w", err)
	}
	seqs, n := selectImages(set, windows)
	ed := &evalData{Seqs: seqs, N: n, Available: set.N, Unit: "bits/dim", What: what}
	ed.Lines = append(ed.Lines, fmt.Sprintf("Data: %s: %d of %d images evaluated, %s = %d dimensions each (crop %q, downscale %d)",
		what, n, set.N, tok.Shape(), tok.SeqLen(), cfg.ImageCrop, max(cfg.ImageDownscale, 1)))
	return ed, nil
}
