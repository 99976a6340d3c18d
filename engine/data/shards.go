package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"unsafe"
)

// Token shard format (the llm.c / nanoGPT ".bin" layout, version 1).
//
// A shard is a little-endian binary file:
//
//	offset 0     int32[256] header
//	               header[0] = 20240520 (ShardMagic)
//	               header[1] = 1        (ShardVersion: tokens are uint16)
//	               header[2] = n        (number of tokens, 0 ≤ n < 2^31)
//	               header[3..255] = 0   (reserved)
//	offset 1024  uint16[n] token ids
//
// so its size is exactly 1024 + 2n bytes. This is the layout written by llm.c's
// dev/data scripts (e.g. fineweb.py, tinyshakespeare.py) and read by its dataloader and
// by nanoGPT-style np.memmap(..., dtype=np.uint16, offset=1024) readers, so shards can
// be exchanged with those tools. Token ids must be below 65536 (GPT-2: below 50257).
//
// Within a split, shards are consecutive pieces of one token stream: documents are
// concatenated, each followed by the EOS id, and a document may continue from one shard
// into the next. Prepare also writes a JSON manifest (see Manifest) that lists the
// shards in order with their token counts and the tokenizer's fingerprint.
const (
	ShardMagic       = 20240520
	ShardVersion     = 1
	ShardHeaderInts  = 256
	ShardHeaderBytes = ShardHeaderInts * 4
	// MaxShardTokens is the most tokens one shard may hold (the count is an int32).
	MaxShardTokens = 1<<31 - 1
)

// ErrBadShard is the sentinel for a malformed shard file (bad magic or version,
// truncated, or a size that disagrees with the header); errors wrap it with the file
// name and the numbers.
var ErrBadShard = errors.New("malformed token shard")

// nativeLittleEndian reports whether uint16 values in memory are little-endian, in
// which case a mapped shard is used in place.
var nativeLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// shardHeader returns the 1024-byte header of a shard of n tokens.
func shardHeader(n int) []byte {
	h := make([]byte, ShardHeaderBytes)
	binary.LittleEndian.PutUint32(h[0:], ShardMagic)
	binary.LittleEndian.PutUint32(h[4:], ShardVersion)
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
	return h
}

// parseShardHeader validates a shard's header against its size in bytes and returns the
// token count. Errors name path and wrap ErrBadShard.
func parseShardHeader(path string, h []byte, size int64) (int, error) {
	if size < ShardHeaderBytes || len(h) < ShardHeaderBytes {
		return 0, fmt.Errorf("token shard %s: %w: %d bytes is shorter than the %d-byte header (truncated file?)", path, ErrBadShard, size, ShardHeaderBytes)
	}
	magic := int32(binary.LittleEndian.Uint32(h[0:]))
	version := int32(binary.LittleEndian.Uint32(h[4:]))
	n := int32(binary.LittleEndian.Uint32(h[8:]))
	switch {
	case magic != ShardMagic:
		return 0, fmt.Errorf("token shard %s: %w: magic %d, want %d (not an llm.c/mdm-gpu .bin token shard)", path, ErrBadShard, magic, ShardMagic)
	case version != ShardVersion:
		return 0, fmt.Errorf("token shard %s: %w: version %d, want %d (uint16 tokens; llm.c's uint32 format is not supported)", path, ErrBadShard, version, ShardVersion)
	case n < 0:
		return 0, fmt.Errorf("token shard %s: %w: negative token count %d in the header", path, ErrBadShard, n)
	}
	want := int64(ShardHeaderBytes) + 2*int64(n)
	if size < want {
		return 0, fmt.Errorf("token shard %s: %w: header says %d tokens (%d bytes) but the file has %d bytes (%d tokens): truncated",
			path, ErrBadShard, n, want, size, (size-ShardHeaderBytes)/2)
	}
	if size > want {
		return 0, fmt.Errorf("token shard %s: %w: header says %d tokens (%d bytes) but the file has %d bytes: %d trailing bytes",
			path, ErrBadShard, n, want, size, size-want)
	}
	return int(n), nil
}

// WriteShard writes tokens as one shard file at path (created or truncated). Every id
// must be in [0, 65536).
func WriteShard(path string, tokens []int32) error {
	if len(tokens) > MaxShardTokens {
		return fmt.Errorf("token shard %s: %d tokens exceed the format's limit of %d per shard", path, len(tokens), MaxShardTokens)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("token shard: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.Write(shardHeader(len(tokens)))
	if _, err := writeTokens(bw, tokens, path, 0); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("token shard %s: %w", path, err)
	}
	return f.Close()
}

// writeTokens writes tokens as little-endian uint16 to w, checking each id is in
// [0, 65536); base is the index of tokens[0] in the shard, for error messages. It returns
// the bytes written.
func writeTokens(w io.Writer, tokens []int32, path string, base int) (int, error) {
	var buf [4096]byte
	written := 0
	for len(tokens) > 0 {
		k := min(len(tokens), len(buf)/2)
		for i, id := range tokens[:k] {
			if id < 0 || id > 0xFFFF {
				return written, fmt.Errorf("token shard %s: token %d at position %d does not fit in uint16 (ids must be in [0, 65536))", path, id, base+i)
			}
			binary.LittleEndian.PutUint16(buf[2*i:], uint16(id))
		}
		n, err := w.Write(buf[:2*k])
		written += n
		if err != nil {
			return written, fmt.Errorf("token shard %s: %w", path, err)
		}
		tokens, base = tokens[k:], base+k
	}
	return written, nil
}

// Shard is one token shard opened read-only and memory-mapped (on Unix; elsewhere it is
// read into memory): its tokens are paged in on demand, so opening a large shard costs
// no RAM up front. Close unmaps it; a Shard must not be used after Close.
type Shard struct {
	path   string
	data   []byte   // the mapped (or read) file
	tokens []uint16 // len n, aliasing data[1024:] on little-endian hosts
	mapped bool
}

// OpenShard opens and validates a shard: magic, version and a file size of exactly
// 1024 + 2n bytes for the n tokens in the header. Errors name the file and wrap
// ErrBadShard when the file is malformed.
func OpenShard(path string) (*Shard, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token shard: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("token shard: %w", err)
	}
	size := fi.Size()
	h := make([]byte, ShardHeaderBytes)
	if size >= ShardHeaderBytes {
		if _, err := io.ReadFull(f, h); err != nil {
			return nil, fmt.Errorf("token shard %s: reading the header: %w", path, err)
		}
	}
	n, err := parseShardHeader(path, h, size)
	if err != nil {
		return nil, err
	}
	data, mapped, err := mapFile(f, size)
	if err != nil {
		return nil, fmt.Errorf("token shard %s: %w", path, err)
	}
	s := &Shard{path: path, data: data, mapped: mapped}
	body := data[ShardHeaderBytes:]
	if n > 0 {
		if nativeLittleEndian {
			s.tokens = unsafe.Slice((*uint16)(unsafe.Pointer(&body[0])), n)
		} else {
			s.tokens = make([]uint16, n)
			for i := range s.tokens {
				s.tokens[i] = binary.LittleEndian.Uint16(body[2*i:])
			}
		}
	}
	return s, nil
}

// Path returns the file the shard was opened from.
func (s *Shard) Path() string { return s.path }

// Len returns the number of tokens.
func (s *Shard) Len() int { return len(s.tokens) }

// Tokens returns the shard's tokens, read-only (they alias the mapped file: writing to
// them faults). The slice is invalid after Close.
func (s *Shard) Tokens() []uint16 { return s.tokens }

// Close unmaps the file.
func (s *Shard) Close() error {
	if s.data == nil {
		return nil
	}
	var err error
	if s.mapped {
		err = unmapFile(s.data)
	}
	s.data, s.tokens = nil, nil
	return err
}

// ShardInfo describes one written shard in a Manifest.
type ShardInfo struct {
	// File is the shard's file name, relative to the manifest's directory.
	File string `json:"file"`
	// Tokens is the number of tokens in the shard.
	Tokens int64 `json:"tokens"`
	// TokensSHA256 is the hex SHA-256 of the token bytes (the file after its 1024-byte
	// header).
	TokensSHA256 string `json:"tokens_sha256"`
}

// ShardWriter streams a token sequence into consecutive shards of at most shardTokens
// tokens each, named <prefix>_000000.bin, <prefix>_000001.bin, … in dir. Each shard is
// written to a ".tmp" file, its header filled in when it is full, and renamed into place,
// so a reader never sees a half-written shard. The zero count case (Close with nothing
// written) produces no shard.
type ShardWriter struct {
	dir, prefix string
	shardTokens int
	maxID       int32

	f      *os.File
	bw     *bufio.Writer
	h      hash.Hash
	n      int // tokens in the current shard
	shards []ShardInfo
	total  int64
	closed bool
}

// NewShardWriter returns a writer of shards of shardTokens tokens (1 ≤ shardTokens ≤
// MaxShardTokens) whose ids must be below vocab (≤ 65536).
func NewShardWriter(dir, prefix string, shardTokens, vocab int) (*ShardWriter, error) {
	if shardTokens < 1 || shardTokens > MaxShardTokens {
		return nil, fmt.Errorf("shard writer: %d tokens per shard is not in [1, %d]", shardTokens, MaxShardTokens)
	}
	if vocab < 1 || vocab > 1<<16 {
		return nil, fmt.Errorf("shard writer: vocabulary of %d does not fit the uint16 shard format (at most 65536 ids)", vocab)
	}
	if prefix == "" || filepath.Base(prefix) != prefix {
		return nil, fmt.Errorf("shard writer: prefix %q must be a plain file-name prefix", prefix)
	}
	return &ShardWriter{dir: dir, prefix: prefix, shardTokens: shardTokens, maxID: int32(vocab - 1)}, nil
}

func (w *ShardWriter) shardName(i int) string { return fmt.Sprintf("%s_%06d.bin", w.prefix, i) }

// Write appends tokens to the stream, starting new shards as needed. Ids outside
// [0, vocab) are refused with an error naming the id and its stream position.
func (w *ShardWriter) Write(tokens []int32) error {
	if w.closed {
		return fmt.Errorf("shard writer %s: write after Close", w.prefix)
	}
	for i, id := range tokens {
		if id < 0 || id > w.maxID {
			return fmt.Errorf("shard writer %s: token id %d at stream position %d is outside [0, %d)", w.prefix, id, w.total+int64(i), w.maxID+1)
		}
	}
	for len(tokens) > 0 {
		if w.f == nil {
			if err := w.open(); err != nil {
				return err
			}
		}
		k := min(len(tokens), w.shardTokens-w.n)
		if _, err := writeTokens(io.MultiWriter(w.bw, w.h), tokens[:k], w.f.Name(), w.n); err != nil {
			return err
		}
		w.n += k
		w.total += int64(k)
		tokens = tokens[k:]
		if w.n == w.shardTokens {
			if err := w.finish(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *ShardWriter) open() error {
	name := filepath.Join(w.dir, w.shardName(len(w.shards))+".tmp")
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("shard writer: %w", err)
	}
	w.f, w.bw, w.h, w.n = f, bufio.NewWriterSize(f, 1<<20), sha256.New(), 0
	if _, err := w.bw.Write(make([]byte, ShardHeaderBytes)); err != nil {
		return fmt.Errorf("shard writer: %w", err)
	}
	return nil
}

// finish completes the current shard: header, flush, rename.
func (w *ShardWriter) finish() error {
	tmp := w.f.Name()
	final := filepath.Join(w.dir, w.shardName(len(w.shards)))
	err := w.bw.Flush()
	if err == nil {
		_, err = w.f.WriteAt(shardHeader(w.n), 0)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("shard writer: finishing %s: %w", final, err)
	}
	w.shards = append(w.shards, ShardInfo{File: filepath.Base(final), Tokens: int64(w.n), TokensSHA256: hex.EncodeToString(w.h.Sum(nil))})
	w.f, w.bw, w.h, w.n = nil, nil, nil, 0
	return nil
}

// Close finishes the last (partial) shard and returns the shards written, in order.
func (w *ShardWriter) Close() ([]ShardInfo, error) {
	if w.closed {
		return w.shards, nil
	}
	w.closed = true
	if w.f != nil {
		if err := w.finish(); err != nil {
			return nil, err
		}
	}
	return w.shards, nil
}

// Abort removes the shard being written (its .tmp file) and every shard finished so far.
func (w *ShardWriter) Abort() {
	w.closed = true
	if w.f != nil {
		name := w.f.Name()
		w.f.Close()
		os.Remove(name)
		w.f = nil
	}
	for _, s := range w.shards {
		os.Remove(filepath.Join(w.dir, s.File))
	}
	w.shards = nil
}

// Tokens returns the number of tokens written so far.
func (w *ShardWriter) Tokens() int64 { return w.total }
