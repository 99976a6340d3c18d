package data

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadMNIST(t *testing.T) {
	dir := filepath.Dir(sharedData(t, "images/mnist/mnist-train-images-idx3-ubyte.gz"))
	train, err := ReadIDX(filepath.Join(dir, "mnist-train-images-idx3-ubyte.gz"), filepath.Join(dir, "mnist-train-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 60000 || train.H != 28 || train.W != 28 || train.C != 1 || len(train.Pixels) != 60000*784 {
		t.Fatalf("train: N=%d %d×%d×%d, %d pixels; want 60000 28×28×1", train.N, train.H, train.W, train.C, len(train.Pixels))
	}
	// The uncompressed file is the original MNIST train-images-idx3-ubyte (README md5).
	h := md5.New()
	hdr := make([]byte, 16)
	for i, v := range []uint32{0x803, 60000, 28, 28} {
		binary.BigEndian.PutUint32(hdr[4*i:], v)
	}
	h.Write(hdr)
	h.Write(train.Pixels)
	if got := hex.EncodeToString(h.Sum(nil)); got != "6bbc9ace898e44ae57da46a324031adb" {
		t.Errorf("md5 of header + pixels = %s, want 6bbc9ace898e44ae57da46a324031adb", got)
	}
	var counts [10]int
	for _, l := range train.Labels {
		counts[l]++
	}
	if want := [10]int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}; counts != want {
		t.Errorf("train label counts %v, want %v", counts, want)
	}
	test, err := ReadIDX(filepath.Join(dir, "mnist-t10k-first3000-images-idx3-ubyte.gz"), filepath.Join(dir, "mnist-t10k-first3000-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if test.N != 3000 || len(test.Labels) != 3000 || test.Labels[0] != 7 {
		t.Errorf("test: N=%d, %d labels, first label %d; want 3000, 3000, 7 (MNIST test image 0 is a 7)", test.N, len(test.Labels), test.Labels[0])
	}
	// Whole images as training blocks.
	w, err := NewPackedWindows(test, test.Dim(), PackBlocks)
	if err != nil {
		t.Fatal(err)
	}
	if w.NumBlocks() != 3000 || w.EvalDropped() != 0 {
		t.Errorf("NumBlocks, EvalDropped = %d, %d; want 3000, 0", w.NumBlocks(), w.EvalDropped())
	}
	rows := make([]int32, 4*784)
	if err := w.TrainBatch(rows, 4, 1, 0); err != nil {
		t.Fatal(err)
	}
	for b := range 4 {
		o := w.Offset(1, 0, b)
		want, _ := test.Tokens(int(o/784), 1)
		if o%784 != 0 || !slices.Equal(rows[b*784:(b+1)*784], want) {
			t.Errorf("row %d (offset %d) is not image %d", b, o, o/784)
		}
	}
}

func TestReadCIFAR10Subset(t *testing.T) {
	dir := filepath.Dir(sharedData(t, "images/cifar10-lossless-subset/cifar10_train_first4000.bin"))
	train, err := ReadCIFAR10(filepath.Join(dir, "cifar10_train_first4000.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 4000 || train.Dim() != 3072 || train.Labels[0] != 6 {
		t.Fatalf("train: N=%d, dim %d, label 0 = %d; want 4000, 3072, 6", train.N, train.Dim(), train.Labels[0])
	}
	// README: image 0 has R[0:3] = 59, 43, 50; channels are innermost.
	img := train.Image(0)
	for col, want := range []uint8{59, 43, 50} {
		if got := img[PixelIndex(0, col, 0, 32, 3)]; got != want {
			t.Errorf("image 0 R(0, %d) = %d, want %d", col, got, want)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "cifar10_train_first4000.bin"))
	for _, k := range []int{0, 1, 777, 1023} { // planar (R plane, G plane, B plane) → interleaved
		r, c, _ := PixelCoords(3*k, 32, 3)
		for ch := range 3 {
			if got, want := img[PixelIndex(r, c, ch, 32, 3)], raw[1+ch*1024+k]; got != want {
				t.Errorf("pixel %d channel %d = %d, want %d from plane %d", k, ch, got, want, ch)
			}
		}
	}
	test, err := ReadCIFAR10(filepath.Join(dir, "cifar10_test_first1000.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if test.N != 1000 || test.Labels[0] != 3 {
		t.Errorf("test: N=%d, label 0 = %d; want 1000, 3", test.N, test.Labels[0])
	}
	both, err := ReadCIFAR10(filepath.Join(dir, "cifar10_train_first4000.bin"), filepath.Join(dir, "cifar10_test_first1000.bin"))
	if err != nil || both.N != 5000 || !bytes.Equal(both.Image(4000), test.Image(0)) {
		t.Errorf("two files: N=%d, err %v; want 5000 with the test images after the train images", both.N, err)
	}
}

func idxBytes(magic uint32, dims []uint32, body []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(body)
	return b.Bytes()
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestImageFileErrors(t *testing.T) {
	good := idxBytes(0x803, []uint32{2, 3, 3}, make([]byte, 18))
	labels := idxBytes(0x801, []uint32{2}, []byte{1, 2})
	gz := gzipBytes(good)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"labels-as-images", labels, "1 dimensions (magic 0x00000801), want 3 (magic 0x00000803: images)"},
		{"float", idxBytes(0x0D03, []uint32{2, 3, 3}, make([]byte, 72)), "data type 0x0d, only 0x08"},
		{"notidx", []byte("PK\x03\x04 zip file"), "does not start with two zero bytes"},
		{"truncated", good[:len(good)-5], "header [2 3 3] says 18 data bytes but the data ends after 13: truncated"},
		{"trailing", append(slices.Clone(good), 9, 9), "2 bytes after the 18 data bytes"},
		{"truncated.gz", gz[:len(gz)-12], "IDX file"},
		{"empty", nil, "truncated or empty"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		os.WriteFile(p, c.data, 0o644)
		_, err := ReadIDXImages(p)
		if err == nil || !errors.Is(err, ErrBadImageFile) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error = %v; want ErrBadImageFile naming the file and %q", c.name, err, c.want)
		}
	}
	gp := filepath.Join(dir, "good.gz")
	os.WriteFile(gp, gz, 0o644)
	if s, err := ReadIDXImages(gp); err != nil || s.N != 2 || s.H != 3 {
		t.Errorf("gzip'd IDX: %v, %v", s, err)
	}
	lp := filepath.Join(dir, "labels3")
	os.WriteFile(lp, idxBytes(0x801, []uint32{3}, []byte{1, 2, 3}), 0o644)
	if _, err := ReadIDX(gp, lp); err == nil || !strings.Contains(err.Error(), "2 images but 3 labels") {
		t.Errorf("count mismatch: error = %v", err)
	}
	os.WriteFile(lp, idxBytes(0x801, []uint32{2}, []byte{1, 10}), 0o644)
	if _, err := ReadIDX(gp, lp); err == nil || !strings.Contains(err.Error(), "label 10 of item 1") {
		t.Errorf("bad label: error = %v", err)
	}
	// CIFAR-10.
	rec := make([]byte, CIFAR10RecordBytes)
	cp := filepath.Join(dir, "c.bin")
	os.WriteFile(cp, append(append(slices.Clone(rec), rec...), rec[:100]...), 0o644)
	if _, err := ReadCIFAR10(cp); !errors.Is(err, ErrBadImageFile) || !strings.Contains(err.Error(), "6246 bytes is not a positive multiple of the 3073-byte record (2 whole records and 100 bytes left") {
		t.Errorf("truncated CIFAR: error = %v", err)
	}
	rec[0] = 12
	os.WriteFile(cp, rec, 0o644)
	if _, err := ReadCIFAR10(cp); err == nil || !strings.Contains(err.Error(), "record 0 has label 12") {
		t.Errorf("bad CIFAR label: error = %v", err)
	}
}

func TestPixelTokens(t *testing.T) {
	for _, s := range []struct{ H, W, C int }{{28, 28, 1}, {32, 32, 3}, {3, 5, 2}} {
		rows, cols, chans := PixelPositions(s.H, s.W, s.C)
		if len(rows) != s.H*s.W*s.C {
			t.Fatalf("%v: %d positions", s, len(rows))
		}
		for p := range rows {
			if PixelIndex(int(rows[p]), int(cols[p]), int(chans[p]), s.W, s.C) != p {
				t.Fatalf("%v: PixelIndex(PixelCoords(%d)) != %d", s, p, p)
			}
		}
	}
	if got := PixelIndex(1, 2, 1, 32, 3); got != (32+2)*3+1 {
		t.Errorf("PixelIndex(1, 2, 1) = %d, want %d", got, (32+2)*3+1)
	}
	if r, c, ch := PixelCoords(3071, 32, 3); r != 31 || c != 31 || ch != 2 {
		t.Errorf("PixelCoords(3071) = %d, %d, %d; want 31, 31, 2", r, c, ch)
	}
	// A uniform model: L·ln 256 nats per image is 8 bits per dimension.
	if got := BitsPerDim(3072*math.Log(256), 32, 32, 3); math.Abs(got-8) > 1e-12 {
		t.Errorf("BitsPerDim(uniform) = %v, want 8", got)
	}
	set, err := ImagesFromTokens([]int32{0, 255, 7, 8, 9, 10}, 1, 3, 1)
	if err != nil || set.N != 2 || !bytes.Equal(set.Pixels, []byte{0, 255, 7, 8, 9, 10}) {
		t.Errorf("ImagesFromTokens = %+v, %v", set, err)
	}
	_, err = ImagesFromTokens([]int32{1, 2, 3, 4, 5, 6, 7, 256, 9, 10, 11, 12}, 1, 2, 3)
	if !errors.Is(err, ErrPixelValue) || !strings.Contains(err.Error(), "image 1, row 0, col 0, channel 1 has value 256 (the mask id") {
		t.Errorf("mask left in a sample: error = %v", err)
	}
	if _, err := ImagesFromTokens([]int32{-3}, 1, 1, 1); !errors.Is(err, ErrPixelValue) || !strings.Contains(err.Error(), "value -3") {
		t.Errorf("negative value: error = %v", err)
	}
	if _, err := ImagesFromTokens(make([]int32, 5), 1, 2, 3); err == nil || !strings.Contains(err.Error(), "5 tokens are not a whole number") {
		t.Errorf("partial image: error = %v", err)
	}
	mn, _ := NewPixels(28, 28, 1)
	cf, _ := NewPixels(32, 32, 3)
	if mn.Fingerprint() == cf.Fingerprint() || mn.Name() != "pixels" || mn.VocabSize() != 256 || cf.SeqLen() != 3072 {
		t.Errorf("pixel tokenizers: fingerprints must differ by shape; V = %d, L = %d", mn.VocabSize(), cf.SeqLen())
	}
	if err := mn.CheckShape(&ImageSet{H: 32, W: 32, C: 3, Source: "cifar.bin"}); !errors.Is(err, ErrTokenizerMismatch) || !strings.Contains(err.Error(), "cifar.bin holds 32×32×3 images but the model's pixel tokenizer is 28x28x1") {
		t.Errorf("CheckShape error = %v", err)
	}
	ids, err := mn.Encode("0 17 255")
	if err != nil || !slices.Equal(ids, []int32{0, 17, 255}) || mn.Decode(append(ids, 256)) != "0 17 255 _" {
		t.Errorf("Encode/Decode: %v %v %q", ids, err, mn.Decode(append(ids, 256)))
	}
	if _, err := mn.Encode("3 256"); err == nil {
		t.Errorf("Encode(256) succeeded")
	}
}
