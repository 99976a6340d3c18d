package imagepng

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
)

func TestGrayGridLayout(t *testing.T) {
	// Three 2×2 grey images with values 10·image + pixel index.
	set := &data.ImageSet{N: 3, H: 2, W: 2, C: 1}
	for n := range 3 {
		for p := range 4 {
			set.Pixels = append(set.Pixels, uint8(10*n+p))
		}
	}
	pv := uint8(200)
	img, err := Grid(set, Options{Cols: 2, Pad: 1, PadValue: &pv, Scale: 2})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := img.(*image.Gray)
	if !ok {
		t.Fatalf("Grid of grey images is %T, want *image.Gray", img)
	}
	// Width: pad + 2·(2·2 + pad) = 11; height: 2 rows → 11.
	if b := g.Bounds(); b.Dx() != 11 || b.Dy() != 11 {
		t.Fatalf("grid is %d×%d, want 11×11", b.Dx(), b.Dy())
	}
	check := func(x, y int, want uint8) {
		t.Helper()
		if got := g.GrayAt(x, y).Y; got != want {
			t.Errorf("pixel (%d, %d) = %d, want %d", x, y, got, want)
		}
	}
	check(0, 0, 200) // border
	check(1, 1, 0)   // image 0, pixel (0,0)
	check(2, 2, 0)   // scale 2: same source pixel
	check(3, 1, 1)   // image 0, pixel (0,1)
	check(1, 3, 2)   // image 0, pixel (1,0)
	check(5, 1, 200) // gap between columns
	check(6, 1, 10)  // image 1 starts at x = 1 + 4 + 1
	check(1, 6, 20)  // image 2: second row
	check(6, 6, 200) // empty cell of the last row
	check(4, 4, 3)   // image 0, pixel (1,1), lower-right block
}

func TestRGBGridAndFile(t *testing.T) {
	set := &data.ImageSet{N: 2, H: 1, W: 2, C: 3, Pixels: []uint8{255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7}}
	path := filepath.Join(t.TempDir(), "g.png")
	if err := WriteGrid(path, set, Options{Pad: -1}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 4 || b.Dy() != 1 {
		t.Fatalf("decoded grid is %d×%d, want 4×1 (2 columns, no padding)", b.Dx(), b.Dy())
	}
	want := [][3]uint32{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 8, 7}}
	for x, w := range want {
		r, g, b, _ := img.At(x, 0).RGBA()
		if [3]uint32{r >> 8, g >> 8, b >> 8} != w {
			t.Errorf("pixel %d = %v, want %v", x, [3]uint32{r >> 8, g >> 8, b >> 8}, w)
		}
	}
}

func TestGridErrors(t *testing.T) {
	if _, err := Grid(&data.ImageSet{N: 1, H: 1, W: 1, C: 2, Pixels: []uint8{1, 2}}, Options{}); err == nil || !strings.Contains(err.Error(), "2 channels") {
		t.Errorf("C=2: error = %v", err)
	}
	if _, err := Grid(&data.ImageSet{N: 2, H: 2, W: 2, C: 1, Pixels: make([]uint8, 5)}, Options{}); err == nil || !strings.Contains(err.Error(), "5 pixel values for 2 images") {
		t.Errorf("short buffer: error = %v", err)
	}
	if _, err := Grid(&data.ImageSet{}, Options{}); err == nil {
		t.Errorf("empty set accepted")
	}
	path := filepath.Join(t.TempDir(), "s.png")
	err := WriteTokenGrid(path, []int32{0, 256, 3, 4}, 2, 2, 1, Options{})
	if err == nil || !strings.Contains(err.Error(), "row 0, col 1, channel 0 has value 256 (the mask id") {
		t.Errorf("mask in a sample: error = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a failed WriteTokenGrid left %s", path)
	}
}

// TestMNISTGrid writes the first 64 MNIST test digits as a grid (to look at:
// set MDM_GRID_OUT=/path/to/file.png).
func TestMNISTGrid(t *testing.T) {
	p := filepath.Join("..", "..", "..", "..", "shared", "data", "images", "mnist")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("skipping: real data not found at %s (see ../shared/data/README.md)", p)
	}
	set, err := data.ReadIDXImages(filepath.Join(p, "mnist-t10k-first3000-images-idx3-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := set.Sub(0, 64)
	out := os.Getenv("MDM_GRID_OUT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "mnist.png")
	}
	if err := WriteGrid(out, sub, Options{Cols: 8, Scale: 2}); err != nil {
		t.Fatal(err)
	}
	img, err := Grid(sub, Options{Cols: 8, Scale: 2})
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 2+8*(56+2) || b.Dy() != 2+8*(56+2) {
		t.Errorf("grid %d×%d, want 466×466", b.Dx(), b.Dy())
	}
	// The first digit (a 7) has ink in its top bar: some bright pixel in rows 5–10.
	bright := 0
	g := img.(*image.Gray)
	for y := 2 + 2*5; y < 2+2*10; y++ {
		for x := 2; x < 2+56; x++ {
			if g.GrayAt(x, y).Y > 200 {
				bright++
			}
		}
	}
	if bright == 0 {
		t.Errorf("no ink in the top rows of the first digit: orientation wrong?")
	}
}
