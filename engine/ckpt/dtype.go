package ckpt

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/nlpodyssey/safetensors"
	"gorgonia.org/tensor"
)

// DType is a safetensors element type, spelled as in the file header.
type DType string

// Element types that Save and Load handle. BF16 and F16 tensors are held in Go as
// uint16 bit patterns (a tensor.Uint16 Dense); every other type maps to the Go type of
// the same width and kind.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	BF16 DType = "BF16"
	F16  DType = "F16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U64  DType = "U64"
	U32  DType = "U32"
	U16  DType = "U16"
	U8   DType = "U8"
)

// dtypeInfo ties a DType to its Go element type and the safetensors library's enum.
type dtypeInfo struct {
	gorgonia tensor.Dtype
	size     int
	st       safetensors.DType
}

var dtypes = map[DType]dtypeInfo{
	F64:  {tensor.Float64, 8, safetensors.F64},
	F32:  {tensor.Float32, 4, safetensors.F32},
	BF16: {tensor.Uint16, 2, safetensors.BF16},
	F16:  {tensor.Uint16, 2, safetensors.F16},
	I64:  {tensor.Int64, 8, safetensors.I64},
	I32:  {tensor.Int32, 4, safetensors.I32},
	I16:  {tensor.Int16, 2, safetensors.I16},
	I8:   {tensor.Int8, 1, safetensors.I8},
	U64:  {tensor.Uint64, 8, safetensors.U64},
	U32:  {tensor.Uint32, 4, safetensors.U32},
	U16:  {tensor.Uint16, 2, safetensors.U16},
	U8:   {tensor.Uint8, 1, safetensors.U8},
}

// Size returns the bytes per element, 0 for an unsupported DType.
func (d DType) Size() int { return dtypes[d].size }

// valid reports whether Save and Load handle d.
func (d DType) valid() bool { _, ok := dtypes[d]; return ok }

// defaultDType is the DType a Dense of element type g is stored as when Named.DType is
// empty.
func defaultDType(g tensor.Dtype) (DType, bool) {
	switch g {
	case tensor.Float64:
		return F64, true
	case tensor.Float32:
		return F32, true
	case tensor.Int64:
		return I64, true
	case tensor.Int32:
		return I32, true
	case tensor.Int16:
		return I16, true
	case tensor.Int8:
		return I8, true
	case tensor.Uint64:
		return U64, true
	case tensor.Uint32:
		return U32, true
	case tensor.Uint16:
		return U16, true
	case tensor.Uint8:
		return U8, true
	}
	return "", false
}

// hostLittleEndian is true on the platforms mdm-gpu targets (amd64, arm64); the byte
// views below are then zero-copy. On a big-endian host bytes are swapped.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// asBytes views the elements of s as bytes in host order (no copy).
func asBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// backingBytes returns the elements of a contiguous Dense as bytes in host order.
func backingBytes(data any) ([]byte, error) {
	switch s := data.(type) {
	case []float64:
		return asBytes(s), nil
	case []float32:
		return asBytes(s), nil
	case []int64:
		return asBytes(s), nil
	case []int32:
		return asBytes(s), nil
	case []int16:
		return asBytes(s), nil
	case []int8:
		return asBytes(s), nil
	case []uint64:
		return asBytes(s), nil
	case []uint32:
		return asBytes(s), nil
	case []uint16:
		return asBytes(s), nil
	case []uint8:
		return asBytes(s), nil
	}
	return nil, fmt.Errorf("unsupported element type %T", data)
}

// newBacking allocates n elements of the Go type for d and returns the slice and its
// byte view.
func newBacking(d DType, n int) (any, []byte) {
	switch dtypes[d].gorgonia {
	case tensor.Float64:
		s := make([]float64, n)
		return s, asBytes(s)
	case tensor.Float32:
		s := make([]float32, n)
		return s, asBytes(s)
	case tensor.Int64:
		s := make([]int64, n)
		return s, asBytes(s)
	case tensor.Int32:
		s := make([]int32, n)
		return s, asBytes(s)
	case tensor.Int16:
		s := make([]int16, n)
		return s, asBytes(s)
	case tensor.Int8:
		s := make([]int8, n)
		return s, asBytes(s)
	case tensor.Uint64:
		s := make([]uint64, n)
		return s, asBytes(s)
	case tensor.Uint32:
		s := make([]uint32, n)
		return s, asBytes(s)
	case tensor.Uint16:
		s := make([]uint16, n)
		return s, asBytes(s)
	default:
		s := make([]uint8, n)
		return s, asBytes(s)
	}
}

// swapBytes reverses the bytes of every size-byte element of b in place (host order ↔
// little-endian on a big-endian host).
func swapBytes(b []byte, size int) {
	if size <= 1 {
		return
	}
	for i := 0; i+size <= len(b); i += size {
		for j, k := i, i+size-1; j < k; j, k = j+1, k-1 {
			b[j], b[k] = b[k], b[j]
		}
	}
}
