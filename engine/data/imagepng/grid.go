// Package imagepng writes image sets (samples, data) as PNG grids with the standard
// library's image/png: images are laid out row by row, Cols per row, separated by Pad
// pixels of a grey value, each pixel drawn as a Scale×Scale block. Grey images
// (C = 1) give an 8-bit grey PNG, RGB images (C = 3) an 8-bit RGB(A) PNG.
package imagepng

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
)

// Options configures a grid. Zero values take the defaults.
type Options struct {
	// Cols is the number of images per grid row; default ⌈√N⌉.
	Cols int
	// Pad is the gap between images and around the grid, in output pixels; default 2.
	// Use a negative value for no gap.
	Pad int
	// PadValue is the grey level of the gaps (0 black … 255 white); default 128.
	PadValue *uint8
	// Scale magnifies every pixel to Scale×Scale output pixels; default 1.
	Scale int
}

// Grid lays out the images of set as a grid image (see Options). It fails for an empty
// set, C other than 1 or 3, or a pixel buffer that does not hold N·H·W·C values.
func Grid(set *data.ImageSet, opts Options) (image.Image, error) {
	if set == nil || set.N <= 0 {
		return nil, fmt.Errorf("png grid: no images")
	}
	if set.C != 1 && set.C != 3 {
		return nil, fmt.Errorf("png grid: %d channels per pixel; want 1 (grey) or 3 (RGB)", set.C)
	}
	if set.H <= 0 || set.W <= 0 || len(set.Pixels) != set.N*set.H*set.W*set.C {
		return nil, fmt.Errorf("png grid: %d pixel values for %d images of %d×%d×%d", len(set.Pixels), set.N, set.H, set.W, set.C)
	}
	cols := opts.Cols
	if cols <= 0 {
		cols = 1
		for cols*cols < set.N {
			cols++
		}
	}
	cols = min(cols, set.N)
	rows := (set.N + cols - 1) / cols
	pad := opts.Pad
	if pad == 0 {
		pad = 2
	}
	pad = max(pad, 0)
	scale := max(opts.Scale, 1)
	padValue := uint8(128)
	if opts.PadValue != nil {
		padValue = *opts.PadValue
	}
	cw, ch := set.W*scale, set.H*scale
	width, height := pad+cols*(cw+pad), pad+rows*(ch+pad)
	rect := image.Rect(0, 0, width, height)
	var gray *image.Gray
	var rgb *image.NRGBA
	if set.C == 1 {
		gray = image.NewGray(rect)
		for i := range gray.Pix {
			gray.Pix[i] = padValue
		}
	} else {
		rgb = image.NewNRGBA(rect)
		for i := 0; i < len(rgb.Pix); i += 4 {
			rgb.Pix[i], rgb.Pix[i+1], rgb.Pix[i+2], rgb.Pix[i+3] = padValue, padValue, padValue, 255
		}
	}
	for n := range set.N {
		img := set.Image(n)
		x0 := pad + (n%cols)*(cw+pad)
		y0 := pad + (n/cols)*(ch+pad)
		for r := range set.H {
			for c := range set.W {
				p := data.PixelIndex(r, c, 0, set.W, set.C)
				for dy := range scale {
					for dx := range scale {
						x, y := x0+c*scale+dx, y0+r*scale+dy
						if gray != nil {
							gray.SetGray(x, y, color.Gray{Y: img[p]})
						} else {
							rgb.SetNRGBA(x, y, color.NRGBA{R: img[p], G: img[p+1], B: img[p+2], A: 255})
						}
					}
				}
			}
		}
	}
	if gray != nil {
		return gray, nil
	}
	return rgb, nil
}

// WriteGrid writes Grid(set, opts) as a PNG file at path (via a temporary file renamed
// into place).
func WriteGrid(path string, set *data.ImageSet, opts Options) error {
	img, err := Grid(set, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".grid-*.png")
	if err != nil {
		return fmt.Errorf("png grid: %w", err)
	}
	if err := png.Encode(tmp, img); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("png grid %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("png grid %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("png grid: %w", err)
	}
	return nil
}

// WriteTokenGrid turns pixel-token sequences (e.g. samples, [n·H·W·C]) into images with
// data.ImagesFromTokens, refusing values outside 0…255 (a mask left in a sample), and
// writes them as a PNG grid.
func WriteTokenGrid(path string, tokens []int32, H, W, C int, opts Options) error {
	set, err := data.ImagesFromTokens(tokens, H, W, C)
	if err != nil {
		return fmt.Errorf("png grid %s: %w", path, err)
	}
	return WriteGrid(path, set, opts)
}
