package bench

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// md4py is the PyTorch baseline (bench/pytorch/md4.py), embedded so that the mdm-gpu
// binary can run it anywhere a python3 with torch exists.
//
//go:embed pytorch/md4.py
var md4py []byte

// ErrNoTorch means no Python interpreter that imports torch was found.
var ErrNoTorch = errors.New("bench: no python3 that imports torch")

// pythonCandidates are tried in order by FindPython: $MDM_PYTHON, Debian's interpreter
// (the python3-torch package installs there), then python3 on PATH.
func pythonCandidates() []string {
	var c []string
	if p := os.Getenv("MDM_PYTHON"); p != "" {
		c = append(c, p)
	}
	return append(c, "/usr/bin/python3", "python3")
}

// FindPython returns the first interpreter that imports torch and numpy, and torch's
// version. Otherwise the error wraps ErrNoTorch and says how to install it.
func FindPython() (path, torchVersion string, err error) {
	var tried []string
	for _, c := range pythonCandidates() {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		tried = append(tried, p)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, p, "-c", "import torch, numpy; print(torch.__version__)").Output()
		cancel()
		if err == nil {
			return p, strings.TrimSpace(string(out)), nil
		}
	}
	return "", "", fmt.Errorf("%w (tried %s); install it with `apt-get install python3-torch libopenblas0-pthread` "+
		"(Debian/Ubuntu; without OpenBLAS torch uses the slow reference BLAS) or point MDM_PYTHON at an interpreter that has torch",
		ErrNoTorch, strings.Join(tried, ", "))
}

// WriteScript writes the embedded md4.py into dir and returns its path.
func WriteScript(dir string) (string, error) {
	p := filepath.Join(dir, "md4.py")
	return p, os.WriteFile(p, md4py, 0o644)
}

// TorchOptions configures a PyTorch baseline process.
type TorchOptions struct {
	Python  string // interpreter (FindPython)
	Shape   Shape
	Device  string // "cpu" (default) or "cuda"
	Threads int    // CPU threads (torch.set_num_threads and the OMP/BLAS environment); 0: torch's default
	Compile bool   // torch.compile the forward (torch ≥ 2, GPU)
	Seed    int
	Env     []string  // extra environment, e.g. OMP_WAIT_POLICY=PASSIVE
	Stderr  io.Writer // the script's stderr (nil: discarded)
}

func (o *TorchOptions) args(dir string) ([]string, error) {
	script, err := WriteScript(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := json.Marshal(o.Shape)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "shape.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return nil, err
	}
	dev := o.Device
	if dev == "" {
		dev = "cpu"
	}
	a := []string{script, "--config", cfgPath, "--device", dev, "--threads", strconv.Itoa(o.Threads), "--seed", strconv.Itoa(max(o.Seed, 1))}
	if o.Compile {
		a = append(a, "--compile")
	}
	return a, nil
}

// torchEnv returns the environment of a torch process with n threads: every thread pool
// that torch or its BLAS may start is limited to n.
func torchEnv(n int) []string {
	env := os.Environ()
	if n > 0 {
		s := strconv.Itoa(n)
		env = append(env, "OMP_NUM_THREADS="+s, "MKL_NUM_THREADS="+s, "OPENBLAS_NUM_THREADS="+s)
	}
	return env
}

// TorchServer is a running `md4.py --serve` process: it times training steps of the
// PyTorch baseline on request, so that a caller can interleave them with its own.
type TorchServer struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Scanner
	dir      string
	Versions map[string]any // from the script's ready line
}

// StartTorch starts the baseline in serve mode and waits until its model is built.
func StartTorch(o TorchOptions) (*TorchServer, error) {
	dir, err := os.MkdirTemp("", "mdm-bench-torch-")
	if err != nil {
		return nil, err
	}
	args, err := o.args(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(o.Python, append(args, "--serve")...)
	cmd.Env = append(torchEnv(o.Threads), o.Env...)
	cmd.Stderr = o.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: starting %s: %w", o.Python, err)
	}
	s := &TorchServer{cmd: cmd, in: in, out: bufio.NewScanner(outPipe), dir: dir}
	s.out.Buffer(make([]byte, 1<<16), 1<<24)
	var ready struct {
		Mode     string         `json:"mode"`
		Versions map[string]any `json:"versions"`
	}
	if err := s.read(&ready); err != nil {
		s.Close()
		return nil, err
	}
	if ready.Mode != "ready" {
		s.Close()
		return nil, fmt.Errorf("bench: md4.py --serve answered %q instead of ready", ready.Mode)
	}
	s.Versions = ready.Versions
	return s, nil
}

func (s *TorchServer) read(v any) error {
	if !s.out.Scan() {
		err := s.out.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("bench: reading from md4.py: %w (see its stderr)", err)
	}
	if err := json.Unmarshal(s.out.Bytes(), v); err != nil {
		return fmt.Errorf("bench: md4.py printed %q: %w", s.out.Text(), err)
	}
	return nil
}

// Steps runs n timed training steps and returns their wall and CPU times in seconds.
func (s *TorchServer) Steps(n int) (wall, cpu []float64, err error) {
	if _, err := fmt.Fprintf(s.in, "steps %d\n", n); err != nil {
		return nil, nil, fmt.Errorf("bench: md4.py: %w", err)
	}
	var r struct {
		Steps []float64 `json:"step_seconds"`
		CPU   []float64 `json:"cpu_seconds"`
		Error string    `json:"error"`
	}
	if err := s.read(&r); err != nil {
		return nil, nil, err
	}
	if r.Error != "" {
		return nil, nil, fmt.Errorf("bench: md4.py: %s", r.Error)
	}
	return r.Steps, r.CPU, nil
}

// Close ends the process.
func (s *TorchServer) Close() error {
	fmt.Fprintln(s.in, "quit")
	s.in.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		err = <-done
	}
	os.RemoveAll(s.dir)
	return err
}

// RunTorch runs md4.py once with extra arguments (e.g. --bench, --kernels, --check DIR)
// and returns its last stdout line decoded into v.
func RunTorch(ctx context.Context, o TorchOptions, v any, extra ...string) error {
	dir, err := os.MkdirTemp("", "mdm-bench-torch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	args, err := o.args(dir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, o.Python, append(args, extra...)...)
	cmd.Env = append(torchEnv(o.Threads), o.Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if o.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, o.Stderr)
	}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("bench: %s %s: %w\n%s", o.Python, strings.Join(extra, " "), err, tail(stderr.String(), 3000))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return fmt.Errorf("bench: md4.py printed %q: %w", tail(string(out), 500), err)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
