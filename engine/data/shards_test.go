package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestShardRoundTripAndLayout(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.bin")
	toks := []int32{0, 1, 50256, 65535, 300, 7}
	if err := WriteShard(p, toks); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(raw), 1024+2*len(toks); got != want {
		t.Fatalf("file size %d, want %d", got, want)
	}
	// The llm.c layout, byte for byte.
	for i, want := range []uint32{20240520, 1, uint32(len(toks))} {
		if got := binary.LittleEndian.Uint32(raw[4*i:]); got != want {
			t.Errorf("header[%d] = %d, want %d", i, got, want)
		}
	}
	for i := 12; i < 1024; i++ {
		if raw[i] != 0 {
			t.Fatalf("reserved header byte %d = %d, want 0", i, raw[i])
		}
	}
	for i, v := range toks {
		if got := binary.LittleEndian.Uint16(raw[1024+2*i:]); int32(got) != v {
			t.Errorf("token %d stored as %d, want %d", i, got, v)
		}
	}
	s, err := OpenShard(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != len(toks) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(toks))
	}
	for i, v := range s.Tokens() {
		if int32(v) != toks[i] {
			t.Errorf("Tokens()[%d] = %d, want %d", i, v, toks[i])
		}
	}
	// An empty shard is valid.
	if err := WriteShard(filepath.Join(dir, "e.bin"), nil); err != nil {
		t.Fatal(err)
	}
	e, err := OpenShard(filepath.Join(dir, "e.bin"))
	if err != nil || e.Len() != 0 {
		t.Fatalf("empty shard: Len %v, err %v; want 0, nil", e.Len(), err)
	}
	e.Close()
	if err := WriteShard(filepath.Join(dir, "big.bin"), []int32{1, 70000}); err == nil || !strings.Contains(err.Error(), "70000 at position 1") {
		t.Errorf("WriteShard(id 70000) error = %v, want one naming the id and position", err)
	}
}

func TestOpenShardRejectsMalformedFiles(t *testing.T) {
	dir := t.TempDir()
	good := append(shardHeader(4), make([]byte, 8)...)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"short.bin", good[:100], "100 bytes is shorter than the 1024-byte header"},
		{"magic.bin", func() []byte {
			b := slices.Clone(good)
			binary.LittleEndian.PutUint32(b, 20240801)
			return b
		}(), "magic 20240801, want 20240520"},
		{"version.bin", func() []byte {
			b := slices.Clone(good)
			binary.LittleEndian.PutUint32(b[4:], 2)
			return b
		}(), "version 2, want 1"},
		{"truncated.bin", good[:1024+5], "header says 4 tokens (1032 bytes) but the file has 1029 bytes (2 tokens): truncated"},
		{"trailing.bin", append(slices.Clone(good), 0, 0), "1034 bytes: 2 trailing bytes"},
		{"negative.bin", func() []byte {
			b := slices.Clone(good)
			binary.LittleEndian.PutUint32(b[8:], 0xFFFFFFFF)
			return b
		}(), "negative token count -1"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenShard(p)
		if err == nil || !errors.Is(err, ErrBadShard) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("OpenShard(%s) error = %v; want ErrBadShard naming the file and %q", c.name, err, c.want)
		}
	}
	if _, err := OpenShard(filepath.Join(dir, "missing.bin")); err == nil || !strings.Contains(err.Error(), "missing.bin") {
		t.Errorf("OpenShard(missing) error = %v, want one naming the file", err)
	}
}

func TestShardWriterSplitsTheStream(t *testing.T) {
	dir := t.TempDir()
	w, err := NewShardWriter(dir, "x_train", 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	stream := seq(12)
	for _, chunk := range [][]int32{stream[:3], stream[3:9], stream[9:]} {
		if err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write([]int32{100}); err == nil || !strings.Contains(err.Error(), "token id 100 at stream position 12 is outside [0, 100)") {
		t.Errorf("Write(id = V) error = %v, want one naming the id and position", err)
	}
	shards, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"x_train_000000.bin", "x_train_000001.bin", "x_train_000002.bin"}
	wantLens := []int64{5, 5, 2}
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3", len(shards))
	}
	var paths []string
	for i, s := range shards {
		if s.File != wantNames[i] || s.Tokens != wantLens[i] {
			t.Errorf("shard %d = %s with %d tokens, want %s with %d", i, s.File, s.Tokens, wantNames[i], wantLens[i])
		}
		raw, _ := os.ReadFile(filepath.Join(dir, s.File))
		sum := sha256.Sum256(raw[1024:])
		if s.TokensSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("shard %d: TokensSHA256 %s does not match the file's token bytes", i, s.TokensSHA256)
		}
		paths = append(paths, filepath.Join(dir, s.File))
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left behind: %v", m)
	}
	ts, err := OpenTokenStream(100, paths...)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if ts.Len() != 12 {
		t.Fatalf("stream Len = %d, want 12", ts.Len())
	}
	for off := int64(0); off < 12; off++ {
		for n := int64(0); off+n <= 12; n++ {
			dst := make([]int32, n)
			if err := ts.Read(dst, off); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dst, stream[off:off+n]) {
				t.Fatalf("Read(off=%d, n=%d) = %v, want %v", off, n, dst, stream[off:off+n])
			}
		}
	}
	if err := ts.Read(make([]int32, 3), 10); err == nil || !strings.Contains(err.Error(), "[10, 13) is outside the 12 tokens") {
		t.Errorf("Read past the end error = %v", err)
	}
	// A stream opened with a smaller V refuses ids at or above it, naming the shard.
	small, err := OpenTokenStream(8, paths...)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if err := small.Read(make([]int32, 4), 6); err == nil || !strings.Contains(err.Error(), "x_train_000001.bin: token 8 at position 3 is not below the vocabulary size 8") {
		t.Errorf("Read with an id ≥ V error = %v", err)
	}
}

func TestShardWriterAbortRemovesFiles(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewShardWriter(dir, "y", 4, 10)
	if err := w.Write(seq(10)); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("Abort left %v", m)
	}
	for _, c := range []struct {
		n, v int
		p    string
	}{{0, 10, "p"}, {5, 70000, "p"}, {5, 10, "a/b"}} {
		if _, err := NewShardWriter(dir, c.p, c.n, c.v); err == nil {
			t.Errorf("NewShardWriter(%d tokens, V=%d, %q) succeeded, want an error", c.n, c.v, c.p)
		}
	}
}

func writeStream(t *testing.T, toks []int32, per int) *TokenStream {
	t.Helper()
	dir := t.TempDir()
	w, err := NewShardWriter(dir, "s", per, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(toks); err != nil {
		t.Fatal(err)
	}
	shards, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range shards {
		paths = append(paths, filepath.Join(dir, s.File))
	}
	ts, err := OpenTokenStream(1<<16, paths...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return ts
}

func TestPackedWindows(t *testing.T) {
	const N, L, B = 1000, 64, 8
	toks := seq(N)
	ts := writeStream(t, toks, 97) // shard boundaries inside windows
	for _, mode := range []PackMode{PackBlocks, PackAnyOffset} {
		w, err := NewPackedWindows(ts, L, mode)
		if err != nil {
			t.Fatal(err)
		}
		if w.NumBlocks() != N/L || w.EvalDropped() != N%L {
			t.Fatalf("%v: NumBlocks, EvalDropped = %d, %d; want %d, %d", mode, w.NumBlocks(), w.EvalDropped(), N/L, N%L)
		}
		dst := make([]int32, B*L)
		seen := map[int64]bool{}
		for step := uint64(0); step < 200; step++ {
			if err := w.TrainBatch(dst, B, 7, step); err != nil {
				t.Fatal(err)
			}
			for b := range B {
				o := w.Offset(7, step, b)
				seen[o] = true
				if mode == PackBlocks && (o%L != 0 || o/L >= N/L) {
					t.Fatalf("blocks: offset %d is not an aligned block start < %d", o, N/L*L)
				}
				if mode == PackAnyOffset && (o < 0 || o > N-L) {
					t.Fatalf("any-offset: offset %d outside [0, %d]", o, N-L)
				}
				if !slices.Equal(dst[b*L:(b+1)*L], toks[o:o+L]) {
					t.Fatalf("%v step %d row %d: window does not equal tokens[%d:%d]", mode, step, b, o, o+L)
				}
			}
			// Rows fetched separately (another device's slice) are the same rows.
			part := make([]int32, 3*L)
			if err := w.TrainRows(part, 2, 3, 7, step); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(part, dst[2*L:5*L]) {
				t.Fatalf("%v step %d: TrainRows(2, 3) differs from rows 2..4 of TrainBatch", mode, step)
			}
		}
		if mode == PackBlocks && len(seen) != N/L {
			t.Errorf("blocks: %d distinct blocks drawn in 1600 draws, want all %d", len(seen), N/L)
		}
		if mode == PackAnyOffset && len(seen) < 700 {
			t.Errorf("any-offset: only %d distinct offsets in 1600 draws", len(seen))
		}
		// Eval blocks are the non-overlapping aligned blocks.
		ev := make([]int32, 2*L)
		if err := w.EvalBlocks(ev, 5, 2); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ev, toks[5*L:7*L]) {
			t.Errorf("EvalBlocks(5, 2) = tokens starting at %d, want %d", ev[0], 5*L)
		}
		if err := w.EvalBlocks(make([]int32, L), N/L, 1); err == nil {
			t.Errorf("EvalBlocks past the last block succeeded")
		}
	}
	if _, err := NewPackedWindows(ts, N+1, PackBlocks); !errors.Is(err, ErrTooShort) || !strings.Contains(err.Error(), "1000 tokens cannot fill one window of 1001") {
		t.Errorf("NewPackedWindows(L > N) error = %v, want ErrTooShort naming both lengths", err)
	}
}
