package sched

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// DefaultMasterPort is the rendezvous port when MASTER_PORT is not set (PyTorch's default).
const DefaultMasterPort = 29500

// LaunchEnv is where this process sits in a multi-process job, read from the environment
// the way PyTorch users launch jobs (architecture.md §7): one process per GPU.
type LaunchEnv struct {
	Rank       int    // global rank in [0, WorldSize)
	WorldSize  int    // number of processes (= GPUs) in the job
	LocalRank  int    // rank on this machine: the GPU ordinal this process drives
	LocalSize  int    // processes on this machine (0 if unknown)
	MasterAddr string // host of rank 0, which runs the rendezvous
	MasterPort int
	Source     string // "torchrun", "slurm" or "single"
}

// Distributed reports whether the job has more than one process.
func (e LaunchEnv) Distributed() bool { return e.WorldSize > 1 }

// Addr returns MasterAddr:MasterPort.
func (e LaunchEnv) Addr() string { return net.JoinHostPort(e.MasterAddr, strconv.Itoa(e.MasterPort)) }

// String describes the position, e.g. "rank 3/8 (local 3) via torchrun, master 10.0.0.1:29500".
func (e LaunchEnv) String() string {
	if !e.Distributed() {
		return "single process"
	}
	return fmt.Sprintf("rank %d/%d (local %d) via %s, master %s", e.Rank, e.WorldSize, e.LocalRank, e.Source, e.Addr())
}

// LaunchEnvFromOS is LaunchEnvFrom(os.Getenv).
func LaunchEnvFromOS() (LaunchEnv, error) { return LaunchEnvFrom(os.Getenv) }

// LaunchEnvFrom reads the launch position through getenv:
//
//   - torchrun style (also MPI wrappers and hand-written scripts): RANK, WORLD_SIZE,
//     LOCAL_RANK (default 0), LOCAL_WORLD_SIZE, MASTER_ADDR (default 127.0.0.1),
//     MASTER_PORT (default 29500);
//   - else Slurm (srun with one task per GPU): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
//     SLURM_NTASKS_PER_NODE, and MASTER_ADDR or else the first host of
//     SLURM_JOB_NODELIST (SLURM_NODELIST), MASTER_PORT or 29500;
//   - else a single process (rank 0 of 1).
//
// A malformed or inconsistent value is an error naming the variable and its value.
func LaunchEnvFrom(getenv func(string) string) (LaunchEnv, error) {
	e := LaunchEnv{WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: DefaultMasterPort, Source: "single"}
	num := func(name string, def int) (int, error) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("sched: %s=%q is not a non-negative integer", name, v)
		}
		return n, nil
	}
	var err error
	set := func(dst *int, name string, def int) {
		if err == nil {
			*dst, err = num(name, def)
		}
	}
	switch {
	case getenv("RANK") != "" || getenv("WORLD_SIZE") != "":
		e.Source = "torchrun"
		if getenv("RANK") == "" || getenv("WORLD_SIZE") == "" {
			return e, fmt.Errorf("sched: RANK=%q and WORLD_SIZE=%q must be set together", getenv("RANK"), getenv("WORLD_SIZE"))
		}
		set(&e.Rank, "RANK", 0)
		set(&e.WorldSize, "WORLD_SIZE", 1)
		set(&e.LocalRank, "LOCAL_RANK", 0)
		set(&e.LocalSize, "LOCAL_WORLD_SIZE", 0)
		if a := strings.TrimSpace(getenv("MASTER_ADDR")); a != "" {
			e.MasterAddr = a
		}
	case getenv("SLURM_PROCID") != "" && getenv("SLURM_NTASKS") != "":
		e.Source = "slurm"
		set(&e.Rank, "SLURM_PROCID", 0)
		set(&e.WorldSize, "SLURM_NTASKS", 1)
		set(&e.LocalRank, "SLURM_LOCALID", 0)
		if v := getenv("SLURM_NTASKS_PER_NODE"); v != "" {
			// "4" or "4(x2)" or "4,2": the first count applies to the first nodes.
			n, perr := strconv.Atoi(strings.FieldsFunc(v, func(r rune) bool { return r == '(' || r == ',' })[0])
			if perr == nil {
				e.LocalSize = n
			}
		}
		switch {
		case strings.TrimSpace(getenv("MASTER_ADDR")) != "":
			e.MasterAddr = strings.TrimSpace(getenv("MASTER_ADDR"))
		default:
			list := getenv("SLURM_JOB_NODELIST")
			if list == "" {
				list = getenv("SLURM_NODELIST")
			}
			if list == "" {
				return e, fmt.Errorf("sched: Slurm job without MASTER_ADDR or SLURM_JOB_NODELIST: cannot tell where rank 0 runs; export MASTER_ADDR")
			}
			h, herr := FirstHost(list)
			if herr != nil {
				return e, herr
			}
			e.MasterAddr = h
		}
	default:
		return e, nil
	}
	set(&e.MasterPort, "MASTER_PORT", DefaultMasterPort)
	if err != nil {
		return e, err
	}
	switch {
	case e.WorldSize < 1:
		return e, fmt.Errorf("sched: world size %d (from %s) must be at least 1", e.WorldSize, e.Source)
	case e.Rank >= e.WorldSize:
		return e, fmt.Errorf("sched: rank %d is outside the world of %d processes (%s)", e.Rank, e.WorldSize, e.Source)
	case e.LocalSize > 0 && e.LocalRank >= e.LocalSize:
		return e, fmt.Errorf("sched: local rank %d is outside the %d processes of this machine", e.LocalRank, e.LocalSize)
	case e.MasterPort < 1 || e.MasterPort > 65535:
		return e, fmt.Errorf("sched: MASTER_PORT=%d is not a TCP port (1–65535)", e.MasterPort)
	}
	return e, nil
}

// FirstHost returns the first host name of a Slurm host list such as
// "gpu[003-006,010],login1" (→ "gpu003") or "rack[1-2]-n[07-08]" (→ "rack1-n07").
func FirstHost(list string) (string, error) {
	list = strings.TrimSpace(list)
	// The first entry ends at the first comma outside brackets.
	depth, end := 0, len(list)
	for i, r := range list {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 && end == len(list) {
				end = i
			}
		}
		if end != len(list) {
			break
		}
	}
	entry := list[:end]
	var b strings.Builder
	for len(entry) > 0 {
		i := strings.IndexByte(entry, '[')
		if i < 0 {
			b.WriteString(entry)
			break
		}
		j := strings.IndexByte(entry[i:], ']')
		if j < 0 {
			return "", fmt.Errorf("sched: malformed Slurm host list %q (unclosed '[')", list)
		}
		b.WriteString(entry[:i])
		first := entry[i+1 : i+j]
		if k := strings.IndexAny(first, ",-"); k >= 0 {
			first = first[:k]
		}
		if first == "" {
			return "", fmt.Errorf("sched: malformed Slurm host list %q (empty range)", list)
		}
		b.WriteString(first)
		entry = entry[i+j+1:]
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("sched: empty Slurm host list %q", list)
	}
	return b.String(), nil
}

// ParseDevices turns a --devices value into device ordinals for a machine with count
// devices: "" or "all" (every device), "0,2,3", "0-3", or a count "n:4" (the first four).
// An index that does not exist, a duplicate or a malformed value is an error with the
// offending value and the valid range.
func ParseDevices(spec string, count int) ([]int, error) {
	spec = strings.TrimSpace(spec)
	if count < 1 {
		return nil, fmt.Errorf("sched: no devices available (found %d)", count)
	}
	all := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	if spec == "" || spec == "all" {
		return all(count), nil
	}
	if rest, ok := strings.CutPrefix(spec, "n:"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > count {
			return nil, fmt.Errorf("sched: --devices %q: want n:K with 1 ≤ K ≤ %d (devices found)", spec, count)
		}
		return all(n), nil
	}
	var out []int
	seen := map[int]bool{}
	add := func(i int) error {
		if i < 0 || i >= count {
			return fmt.Errorf("sched: --devices %q: device %d does not exist; this machine has %d device(s), indices 0–%d", spec, i, count, count-1)
		}
		if seen[i] {
			return fmt.Errorf("sched: --devices %q lists device %d twice", spec, i)
		}
		seen[i] = true
		out = append(out, i)
		return nil
	}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("sched: --devices %q: %q is not an index or a range a-b (valid: all, 0,1,3, 0-3, n:4)", spec, part)
		}
		for i := a; i <= b; i++ {
			if err := add(i); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
