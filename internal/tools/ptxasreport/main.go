// Command ptxasreport turns the `nvcc -Xptxas -v` reports written by the CMake kernel build
// into a table of registers, shared memory, stack and spills per kernel and architecture,
// and fails when a kernel spills more than its budget (so CI catches new register spills).
//
//	go run ./internal/tools/ptxasreport [-budget kernels/spill-budget.txt] [-o table.md] build/ptxas/*.txt
//
// The budget file has lines "kernel_name max_spill_bytes" (# comments allowed); kernels not
// listed may not spill at all.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// entry is the resource usage of one kernel for one architecture.
type entry struct {
	Kernel, Arch, File      string
	Registers, Smem, Stack  int
	SpillStores, SpillLoads int
}

var (
	reEntry = regexp.MustCompile(`Compiling entry function '([^']+)' for '(sm_\d+)'`)
	reFrame = regexp.MustCompile(`(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads`)
	reUsed  = regexp.MustCompile(`Used (\d+) registers`)
	reSmem  = regexp.MustCompile(`(\d+) bytes smem`)
)

// parse reads one report.
func parse(r io.Reader, file string) ([]entry, error) {
	var out []entry
	var cur *entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := reEntry.FindStringSubmatch(line); m != nil {
			out = append(out, entry{Kernel: m[1], Arch: m[2], File: file})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil {
			continue
		}
		if m := reFrame.FindStringSubmatch(line); m != nil {
			cur.Stack, _ = strconv.Atoi(m[1])
			cur.SpillStores, _ = strconv.Atoi(m[2])
			cur.SpillLoads, _ = strconv.Atoi(m[3])
		}
		if m := reUsed.FindStringSubmatch(line); m != nil {
			cur.Registers, _ = strconv.Atoi(m[1])
			if s := reSmem.FindStringSubmatch(line); s != nil {
				cur.Smem, _ = strconv.Atoi(s[1])
			}
		}
	}
	return out, sc.Err()
}

func readBudget(path string) (map[string]int, error) {
	b := map[string]int{}
	if path == "" {
		return b, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.Atoi(f[len(f)-1])
		if len(f) != 2 || err != nil {
			return nil, fmt.Errorf("%s:%d: want \"kernel max_spill_bytes\", got %q", path, i+1, line)
		}
		b[f[0]] = n
	}
	return b, nil
}

func main() {
	budgetPath := flag.String("budget", "", "spill budget file (kernel max_spill_bytes per line)")
	outPath := flag.String("o", "", "also write the table (markdown) to this file")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: ptxasreport [-budget FILE] [-o table.md] REPORT.txt...")
		os.Exit(2)
	}
	budget, err := readBudget(*budgetPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ptxasreport:", err)
		os.Exit(2)
	}
	var all []entry
	for _, p := range flag.Args() {
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ptxasreport:", err)
			os.Exit(2)
		}
		es, err := parse(f, filepath.Base(p))
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ptxasreport:", p, err)
			os.Exit(2)
		}
		all = append(all, es...)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Kernel != all[j].Kernel {
			return all[i].Kernel < all[j].Kernel
		}
		return all[i].Arch < all[j].Arch
	})
	var b strings.Builder
	fmt.Fprintln(&b, "| kernel | arch | registers | smem (static B) | stack B | spill stores B | spill loads B |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
	var bad []string
	for _, e := range all {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d |\n", e.Kernel, e.Arch, e.Registers, e.Smem, e.Stack, e.SpillStores, e.SpillLoads)
		spill := e.SpillStores + e.SpillLoads
		if spill > budget[e.Kernel] {
			bad = append(bad, fmt.Sprintf("%s (%s): %d bytes of spills, budget %d", e.Kernel, e.Arch, spill, budget[e.Kernel]))
		}
	}
	fmt.Print(b.String())
	if *outPath != "" {
		if err := os.WriteFile(*outPath, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "ptxasreport:", err)
			os.Exit(2)
		}
	}
	if len(all) == 0 {
		fmt.Fprintln(os.Stderr, "ptxasreport: no kernels found in the reports")
		os.Exit(1)
	}
	if len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "ptxasreport: register spills over budget:\n  "+strings.Join(bad, "\n  "))
		os.Exit(1)
	}
}
