package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ImageSet is a set of N images of H×W pixels with C channels (1 grey, 3 RGB), 8 bits
// per channel, stored image after image in raster order with the channels innermost:
// the value of channel c of pixel (row, col) of image i is
// Pixels[i·H·W·C + (row·W + col)·C + c]. This is the [H, W, C] layout MD4's image
// networks reshape to (md4.md §6.2), and also the pixel-token order (see PixelIndex).
//
// An ImageSet is a TokenSource: its tokens are the pixel values 0…255 (PixelVocabSize
// classes, mask id PixelMaskID = 256), so NewPackedWindows(set, set.Dim(), PackBlocks)
// draws whole images.
type ImageSet struct {
	N, H, W, C int
	Pixels     []uint8 // [N, H, W, C]
	Labels     []uint8 // [N] class ids, or nil
	// Source names the file(s) the images were read from.
	Source string
}

// Dim returns H·W·C, the number of pixel tokens (dimensions) per image.
func (s *ImageSet) Dim() int { return s.H * s.W * s.C }

// Image returns image i's H·W·C values (a sub-slice of Pixels).
func (s *ImageSet) Image(i int) []uint8 {
	d := s.Dim()
	return s.Pixels[i*d : (i+1)*d : (i+1)*d]
}

// Len returns N·H·W·C, the number of pixel tokens in the set.
func (s *ImageSet) Len() int64 { return int64(len(s.Pixels)) }

// Read copies pixel tokens [off, off+len(dst)) into dst as ids 0…255.
func (s *ImageSet) Read(dst []int32, off int64) error {
	if off < 0 || off+int64(len(dst)) > int64(len(s.Pixels)) {
		return fmt.Errorf("image set %s: range [%d, %d) is outside the %d pixel tokens", s.Source, off, off+int64(len(dst)), len(s.Pixels))
	}
	for i, v := range s.Pixels[off : off+int64(len(dst))] {
		dst[i] = int32(v)
	}
	return nil
}

// Tokens returns the pixel tokens of images [first, first+n), [n, H·W·C] row-major.
func (s *ImageSet) Tokens(first, n int) ([]int32, error) {
	if first < 0 || n < 0 || first+n > s.N {
		return nil, fmt.Errorf("image set %s: images [%d, %d) are outside the %d images", s.Source, first, first+n, s.N)
	}
	out := make([]int32, n*s.Dim())
	return out, s.Read(out, int64(first*s.Dim()))
}

// Sub returns images [first, first+n) as a new set sharing the pixel memory.
func (s *ImageSet) Sub(first, n int) (*ImageSet, error) {
	if first < 0 || n < 0 || first+n > s.N {
		return nil, fmt.Errorf("image set %s: images [%d, %d) are outside the %d images", s.Source, first, first+n, s.N)
	}
	d := s.Dim()
	sub := &ImageSet{N: n, H: s.H, W: s.W, C: s.C, Pixels: s.Pixels[first*d : (first+n)*d : (first+n)*d], Source: s.Source}
	if s.Labels != nil {
		sub.Labels = s.Labels[first : first+n : first+n]
	}
	return sub, nil
}

// ErrBadImageFile is the sentinel for a malformed IDX or CIFAR-10 file (bad magic,
// unsupported type, truncated, trailing bytes, bad label); errors wrap it with the file
// name and the numbers.
var ErrBadImageFile = errors.New("malformed image file")

// openMaybeGzip opens path and transparently decompresses it when it starts with the
// gzip magic bytes 1f 8b.
func openMaybeGzip(path string) (io.Reader, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("image file: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("image file %s: %w: bad gzip header: %v", path, ErrBadImageFile, err)
		}
		return gz, f.Close, nil
	}
	return br, f.Close, nil
}

// readIDX reads an IDX file (LeCun's MNIST format, optionally gzip'd): big-endian magic
// 00 00 08 ndim (type 0x08 = unsigned byte), ndim uint32 dimensions, then the data. It
// checks the dimension count and that the data has exactly the size the header says.
func readIDX(path string, wantDims int) ([]int, []uint8, error) {
	r, closeFn, err := openMaybeGzip(path)
	if err != nil {
		return nil, nil, err
	}
	defer closeFn()
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, fmt.Errorf("IDX file %s: %w: no 4-byte magic (%v): truncated or empty", path, ErrBadImageFile, err)
	}
	if hdr[0] != 0 || hdr[1] != 0 {
		return nil, nil, fmt.Errorf("IDX file %s: %w: magic %02x%02x%02x%02x does not start with two zero bytes (not an IDX file)", path, ErrBadImageFile, hdr[0], hdr[1], hdr[2], hdr[3])
	}
	if hdr[2] != 0x08 {
		return nil, nil, fmt.Errorf("IDX file %s: %w: data type 0x%02x, only 0x08 (unsigned byte) is supported", path, ErrBadImageFile, hdr[2])
	}
	if int(hdr[3]) != wantDims {
		return nil, nil, fmt.Errorf("IDX file %s: %w: %d dimensions (magic 0x%08x), want %d (magic 0x%08x: %s)", path, ErrBadImageFile,
			hdr[3], binary.BigEndian.Uint32(hdr[:]), wantDims, 0x800|wantDims, map[int]string{1: "labels", 3: "images"}[wantDims])
	}
	dims := make([]int, wantDims)
	size := int64(1)
	for i := range dims {
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, fmt.Errorf("IDX file %s: %w: header truncated in dimension %d (%v)", path, ErrBadImageFile, i, err)
		}
		d := binary.BigEndian.Uint32(b[:])
		if d == 0 || d > 1<<28 {
			return nil, nil, fmt.Errorf("IDX file %s: %w: dimension %d is %d", path, ErrBadImageFile, i, d)
		}
		dims[i] = int(d)
		size *= int64(d)
		if size > 1<<34 {
			return nil, nil, fmt.Errorf("IDX file %s: %w: header dimensions %v are implausibly large", path, ErrBadImageFile, dims[:i+1])
		}
	}
	body := make([]uint8, size)
	if n, err := io.ReadFull(r, body); err != nil {
		return nil, nil, fmt.Errorf("IDX file %s: %w: header %v says %d data bytes but the data ends after %d: truncated (%v)", path, ErrBadImageFile, dims, size, n, err)
	}
	var extra [1]byte
	if n, err := io.ReadFull(r, extra[:]); n > 0 {
		rest, _ := io.Copy(io.Discard, r)
		return nil, nil, fmt.Errorf("IDX file %s: %w: %d bytes after the %d data bytes the header %v describes", path, ErrBadImageFile, rest+1, size, dims)
	} else if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("IDX file %s: %w: %v (truncated gzip stream?)", path, ErrBadImageFile, err)
	}
	return dims, body, nil
}

// ReadIDXImages reads an IDX image file (magic 0x00000803: N×rows×cols unsigned bytes,
// e.g. MNIST's train-images-idx3-ubyte, plain or .gz) as N grey images (C = 1). Errors
// wrap ErrBadImageFile and name the file: wrong magic, truncated data, trailing bytes.
func ReadIDXImages(path string) (*ImageSet, error) {
	dims, body, err := readIDX(path, 3)
	if err != nil {
		return nil, err
	}
	return &ImageSet{N: dims[0], H: dims[1], W: dims[2], C: 1, Pixels: body, Source: path}, nil
}

// ReadIDXLabels reads an IDX label file (magic 0x00000801: N unsigned bytes).
func ReadIDXLabels(path string) ([]uint8, error) {
	_, body, err := readIDX(path, 1)
	return body, err
}

// ReadIDX reads an IDX image file and its label file (labelsPath may be "") and checks
// that they hold the same number of items and that every label is below 10 (MNIST and
// Fashion-MNIST classes).
func ReadIDX(imagesPath, labelsPath string) (*ImageSet, error) {
	set, err := ReadIDXImages(imagesPath)
	if err != nil || labelsPath == "" {
		return set, err
	}
	labels, err := ReadIDXLabels(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(labels) != set.N {
		return nil, fmt.Errorf("IDX files %s and %s: %w: %d images but %d labels", imagesPath, labelsPath, ErrBadImageFile, set.N, len(labels))
	}
	for i, l := range labels {
		if l > 9 {
			return nil, fmt.Errorf("IDX file %s: %w: label %d of item %d is not a class 0–9", labelsPath, ErrBadImageFile, l, i)
		}
	}
	set.Labels = labels
	set.Source = imagesPath + " + " + labelsPath
	return set, nil
}

// CIFAR-10 binary format: records of 1 label byte (0–9) and 3,072 pixel bytes, the
// 1,024 red values, then the green, then the blue, each plane 32×32 row-major.
const (
	CIFAR10RecordBytes = 1 + 3*32*32
	cifarSide          = 32
)

// ReadCIFAR10 reads CIFAR-10 binary files (data_batch_*.bin, test_batch.bin, or
// subsets) in order into one set of 32×32×3 images, converting each record's planar
// R, G, B layout to the ImageSet's [H, W, C] layout. A file whose size is not a multiple
// of 3,073 bytes (truncated) or a label above 9 is refused, naming the file and record.
func ReadCIFAR10(paths ...string) (*ImageSet, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("CIFAR-10: no files")
	}
	set := &ImageSet{H: cifarSide, W: cifarSide, C: 3}
	const plane = cifarSide * cifarSide
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("CIFAR-10: %w", err)
		}
		if len(b) == 0 || len(b)%CIFAR10RecordBytes != 0 {
			return nil, fmt.Errorf("CIFAR-10 file %s: %w: %d bytes is not a positive multiple of the %d-byte record (%d whole records and %d bytes left: truncated?)",
				p, ErrBadImageFile, len(b), CIFAR10RecordBytes, len(b)/CIFAR10RecordBytes, len(b)%CIFAR10RecordBytes)
		}
		n := len(b) / CIFAR10RecordBytes
		base := len(set.Pixels)
		set.Pixels = append(set.Pixels, make([]uint8, n*3*plane)...)
		for i := range n {
			rec := b[i*CIFAR10RecordBytes : (i+1)*CIFAR10RecordBytes]
			if rec[0] > 9 {
				return nil, fmt.Errorf("CIFAR-10 file %s: %w: record %d has label %d, not a class 0–9 (a CIFAR-100 file has 3,074-byte records)", p, ErrBadImageFile, i, rec[0])
			}
			set.Labels = append(set.Labels, rec[0])
			dst := set.Pixels[base+i*3*plane:]
			for k := range plane {
				dst[3*k] = rec[1+k]
				dst[3*k+1] = rec[1+plane+k]
				dst[3*k+2] = rec[1+2*plane+k]
			}
		}
		set.N += n
	}
	set.Source = paths[0]
	if len(paths) > 1 {
		set.Source = fmt.Sprintf("%s (+%d files)", paths[0], len(paths)-1)
	}
	return set, nil
}
