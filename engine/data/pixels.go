package data

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Pixel tokens (md4.md §6.2): every 8-bit channel value of an image is one token of a
// 256-way vocabulary, and the mask is id 256. An image of H×W pixels with C channels is
// a sequence of L = H·W·C tokens in raster order with the channels innermost:
//
//	position p = (row·W + col)·C + c,  0 ≤ row < H, 0 ≤ col < W, 0 ≤ c < C
//
// (the [H, W, C] reshape of MD4's image code: for CIFAR-10 the sequence is R, G, B of
// pixel (0,0), then R, G, B of pixel (0,1), …). Bits per dimension is bits per token with
// L = H·W·C.
const (
	// PixelVocabSize is V for pixel tokens: the values 0…255.
	PixelVocabSize = 256
	// PixelMaskID is the mask token of pixel models, V = 256.
	PixelMaskID = 256
)

// PixelIndex returns the sequence position of channel c of pixel (row, col) in an image
// W pixels wide with C channels: (row·W + col)·C + c.
func PixelIndex(row, col, c, W, C int) int { return (row*W+col)*C + c }

// PixelCoords inverts PixelIndex: the (row, col, channel) of position p.
func PixelCoords(p, W, C int) (row, col, c int) {
	c = p % C
	q := p / C
	return q / W, q % W, c
}

// PixelPositions returns, for each of the L = H·W·C positions, its row, column and
// channel: the inputs of a pixel-token transformer's position features (positions that
// know row, column and channel).
func PixelPositions(H, W, C int) (rows, cols, chans []int32) {
	L := H * W * C
	rows, cols, chans = make([]int32, L), make([]int32, L), make([]int32, L)
	for p := range L {
		r, c, ch := PixelCoords(p, W, C)
		rows[p], cols[p], chans[p] = int32(r), int32(c), int32(ch)
	}
	return rows, cols, chans
}

// BitsPerDim converts a negative log-likelihood (or bound) of natsPerImage nats per
// image of H×W×C to bits per dimension: natsPerImage / (H·W·C·ln 2). A model that is
// uniform over the 256 values scores exactly 8.
func BitsPerDim(natsPerImage float64, H, W, C int) float64 {
	return natsPerImage / (float64(H*W*C) * math.Ln2)
}

// ErrPixelValue is the sentinel for a token that is not a pixel value 0…255 where an
// image is expected (a mask left in a sample, a negative id, an id ≥ 257).
var ErrPixelValue = errors.New("token is not a pixel value 0–255")

// ImagesFromTokens turns n = len(tokens)/(H·W·C) token sequences (e.g. samples) into an
// ImageSet. Every token must be a pixel value in [0, 255]: a mask id (256) left in a
// sample or any other value is refused with an error (wrapping ErrPixelValue) naming
// the image, the (row, col, channel) and the value.
func ImagesFromTokens(tokens []int32, H, W, C int) (*ImageSet, error) {
	L := H * W * C
	if H <= 0 || W <= 0 || C <= 0 {
		return nil, fmt.Errorf("images from tokens: shape %d×%d×%d must be positive", H, W, C)
	}
	if len(tokens)%L != 0 {
		return nil, fmt.Errorf("images from tokens: %d tokens are not a whole number of %d×%d×%d = %d-token images", len(tokens), H, W, C, L)
	}
	set := &ImageSet{N: len(tokens) / L, H: H, W: W, C: C, Pixels: make([]uint8, len(tokens)), Source: "tokens"}
	for i, v := range tokens {
		if v < 0 || v > 255 {
			r, c, ch := PixelCoords(i%L, W, C)
			what := ""
			if v == PixelMaskID {
				what = " (the mask id: the sample still has masked positions)"
			}
			return nil, fmt.Errorf("images from tokens: %w: image %d, row %d, col %d, channel %d has value %d%s", ErrPixelValue, i/L, r, c, ch, v, what)
		}
		set.Pixels[i] = uint8(v)
	}
	return set, nil
}

// Pixels is the pixel "tokenizer" of an H×W×C image model: V = 256, mask id 256. It
// carries the image shape so that a checkpoint's fingerprint refuses data of another
// shape (MNIST 28×28×1 vs CIFAR-10 32×32×3). Images are tokenised with ImageSet (Read,
// Tokens), not from text: Encode parses space-separated decimal values (for tests and
// debugging), Decode prints them, the mask as "_".
type Pixels struct {
	H, W, C int
}

// NewPixels returns the pixel tokenizer of H×W×C images.
func NewPixels(H, W, C int) (Pixels, error) {
	if H <= 0 || W <= 0 || C <= 0 {
		return Pixels{}, fmt.Errorf("pixel tokenizer: shape %d×%d×%d must be positive", H, W, C)
	}
	return Pixels{H: H, W: W, C: C}, nil
}

// Name returns "pixels".
func (Pixels) Name() string { return "pixels" }

// VocabSize returns 256.
func (Pixels) VocabSize() int { return PixelVocabSize }

// SeqLen returns H·W·C.
func (p Pixels) SeqLen() int { return p.H * p.W * p.C }

// Shape returns "HxWxC", e.g. "28x28x1".
func (p Pixels) Shape() string { return fmt.Sprintf("%dx%dx%d", p.H, p.W, p.C) }

// Fingerprint hashes the vocabulary (values 0…255) and the image shape.
func (p Pixels) Fingerprint() string {
	vocab := make([]byte, PixelVocabSize)
	for i := range vocab {
		vocab[i] = byte(i)
	}
	return fingerprint("pixels "+p.Shape()+" raster-hwc", PixelVocabSize, vocab)
}

// Encode parses whitespace-separated decimal values 0…255.
func (Pixels) Encode(text string) ([]int32, error) {
	f := strings.Fields(text)
	ids := make([]int32, len(f))
	for i, s := range f {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > 255 {
			return nil, fmt.Errorf("pixel tokenizer: field %d %q is not a value 0–255", i+1, s)
		}
		ids[i] = int32(v)
	}
	return ids, nil
}

// Decode prints the values separated by spaces, the mask id as "_" and any other id
// outside [0, 256] as U+FFFD.
func (Pixels) Decode(ids []int32) string {
	var b strings.Builder
	for i, v := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case v >= 0 && v < PixelVocabSize:
			b.WriteString(strconv.Itoa(int(v)))
		case v == PixelMaskID:
			b.WriteString(MaskPlaceholder)
		default:
			b.WriteString(invalidPlaceholder)
		}
	}
	return b.String()
}

// CheckShape refuses an image set whose shape differs from the tokenizer's, naming both.
func (p Pixels) CheckShape(s *ImageSet) error {
	if s.H != p.H || s.W != p.W || s.C != p.C {
		return fmt.Errorf("%w: %s holds %d×%d×%d images but the model's pixel tokenizer is %s", ErrTokenizerMismatch, s.Source, s.H, s.W, s.C, p.Shape())
	}
	return nil
}
