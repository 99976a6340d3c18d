package cuda

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// Kernel names of an nvcc fatbin, read without a GPU: the real device uses them to know
// which embedded module holds a kernel (so only that module is loaded, and an unknown name
// fails before any driver call) and to implement Device.Kernels.
//
// Layout of an nvcc fatbin (little-endian): a 16-byte header — magic 0xBA55ED50, u16
// version, u16 header size, u64 size of the entries that follow — then entries, each with
// a header — u16 kind (1 PTX, 2 ELF cubin), u16, u32 header size, u64 payload size, … —
// followed by its payload. Cubins are ELF files whose kernels are global STT_FUNC symbols
// marked STO_CUDA_ENTRY (0x10) in .text.<name> sections. PTX entries are usually
// compressed and are not read; every kernel has a cubin for sm_90 and sm_80 in our builds.

const fatbinMagic = 0xBA55ED50

// FatbinKernels returns the sorted, de-duplicated names of the kernels (entry points) in
// the cubins of a fatbin image.
func FatbinKernels(image []byte) ([]string, error) {
	seen := map[string]bool{}
	off := 0
	nfat := 0
	for off+16 <= len(image) {
		if binary.LittleEndian.Uint32(image[off:]) != fatbinMagic {
			if nfat == 0 {
				return nil, fmt.Errorf("cuda: not a fatbin (magic %#x)", binary.LittleEndian.Uint32(image[off:]))
			}
			break // trailing padding
		}
		nfat++
		hsize := int(binary.LittleEndian.Uint16(image[off+6:]))
		fsize := binary.LittleEndian.Uint64(image[off+8:])
		start := off + hsize
		if hsize < 16 || fsize > uint64(len(image)-start) {
			return nil, fmt.Errorf("cuda: corrupt fatbin header at %d", off)
		}
		end := start + int(fsize)
		for e := start; e+16 <= end; {
			kind := binary.LittleEndian.Uint16(image[e:])
			ehsize := int(binary.LittleEndian.Uint32(image[e+4:]))
			psize := binary.LittleEndian.Uint64(image[e+8:])
			if ehsize < 16 || psize > uint64(end-e-ehsize) {
				return nil, fmt.Errorf("cuda: corrupt fatbin entry at %d", e)
			}
			payload := image[e+ehsize : e+ehsize+int(psize)]
			if kind == 2 && bytes.HasPrefix(payload, []byte(elf.ELFMAG)) {
				names, err := cubinKernels(payload)
				if err != nil {
					return nil, fmt.Errorf("cuda: fatbin cubin at %d: %w", e, err)
				}
				for _, n := range names {
					seen[n] = true
				}
			}
			e += ehsize + int(psize)
		}
		off = end
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// cubinKernels returns the entry points of one cubin. The ELF is read by hand: cubins
// carry a CUDA-specific e_version that debug/elf rejects.
func cubinKernels(b []byte) ([]string, error) {
	le := binary.LittleEndian
	if len(b) < 64 || b[elf.EI_CLASS] != byte(elf.ELFCLASS64) || b[elf.EI_DATA] != byte(elf.ELFDATA2LSB) {
		return nil, fmt.Errorf("not a 64-bit little-endian ELF")
	}
	shoff, shentsize, shnum, shstrndx := le.Uint64(b[0x28:]), int(le.Uint16(b[0x3a:])), int(le.Uint16(b[0x3c:])), int(le.Uint16(b[0x3e:]))
	if shentsize < 64 || shoff > uint64(len(b)) || uint64(shnum)*uint64(shentsize) > uint64(len(b))-shoff {
		return nil, fmt.Errorf("bad section header table")
	}
	type section struct {
		name, typ, link uint32
		off, size, ent  uint64
	}
	secs := make([]section, shnum)
	for i := range secs {
		h := b[int(shoff)+i*shentsize:]
		secs[i] = section{name: le.Uint32(h), typ: le.Uint32(h[4:]), off: le.Uint64(h[24:]), size: le.Uint64(h[32:]),
			link: le.Uint32(h[40:]), ent: le.Uint64(h[56:])}
		if secs[i].typ != uint32(elf.SHT_NOBITS) && (secs[i].off > uint64(len(b)) || secs[i].size > uint64(len(b))-secs[i].off) {
			return nil, fmt.Errorf("section %d out of range", i)
		}
	}
	str := func(tab int, off uint32) string {
		if tab <= 0 || tab >= len(secs) || uint64(off) >= secs[tab].size {
			return ""
		}
		s := b[secs[tab].off+uint64(off) : secs[tab].off+secs[tab].size]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s)
	}
	var out []string
	for _, sec := range secs {
		if sec.typ != uint32(elf.SHT_SYMTAB) || sec.ent < 24 {
			continue
		}
		for o := uint64(0); o+24 <= sec.size; o += sec.ent {
			s := b[sec.off+o:]
			info, other, shndx := s[4], s[5], int(le.Uint16(s[6:]))
			if elf.ST_TYPE(info) != elf.STT_FUNC || elf.ST_BIND(info) != elf.STB_GLOBAL {
				continue
			}
			entry := other&0x10 != 0 // STO_CUDA_ENTRY
			if !entry && shndx > 0 && shndx < len(secs) {
				entry = strings.HasPrefix(str(shstrndx, secs[shndx].name), ".text.")
			}
			if name := str(int(sec.link), le.Uint32(s)); entry && name != "" {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// kernelIndex maps each kernel name to the fatbin (family) holding it.
func kernelIndex(fatbins map[string][]byte) (map[string]string, error) {
	index := map[string]string{}
	families := make([]string, 0, len(fatbins))
	for fam := range fatbins {
		families = append(families, fam)
	}
	sort.Strings(families)
	for _, fam := range families {
		names, err := FatbinKernels(fatbins[fam])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fam, err)
		}
		for _, n := range names {
			if other, dup := index[n]; dup {
				return nil, fmt.Errorf("cuda: kernel %s is defined in both %s and %s", n, other, fam)
			}
			index[n] = fam
		}
	}
	return index, nil
}
