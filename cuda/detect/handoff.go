package detect

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// CUDABinaryName is the CUDA build's file name, looked for next to the running executable.
const CUDABinaryName = "mdm-gpu-cuda"

// Environment variables of the hand-off.
const (
	// EnvNoHandOff=1 keeps the CPU build on the CPU.
	EnvNoHandOff = "MDM_NO_HANDOFF"
	// EnvCUDABinary overrides the path of the CUDA build.
	EnvCUDABinary = "MDM_CUDA_BINARY"
	// EnvHandedOff is set in the environment of the CUDA build by the hand-off (and stops
	// a second one).
	EnvHandedOff = "MDM_HANDED_OFF"
	// EnvHandOffVerbose=1 makes MaybeHandOff print its decision on stderr (for scripts
	// such as bench/gpu-check.sh that check the hand-off).
	EnvHandOffVerbose = "MDM_HANDOFF_VERBOSE"
)

// Decision is what MaybeHandOff decided when it returns (after a successful hand-off it
// does not return).
type Decision struct {
	// CUDABuild: this binary is the CUDA build (no hand-off considered).
	CUDABuild bool
	// HandedOff: this process was started by a hand-off from the CPU build.
	HandedOff bool
	// Probe is the NVML probe, when one was made.
	Probe *Probe
	// Target is the CUDA build that was considered ("" if none was looked for).
	Target string
	// HandOff: the exec was attempted (MaybeHandOff returns after it only on failure).
	HandOff bool
	// Reason is one line saying why this process stays on this binary (and so, for the
	// CPU build, on the CPU); "" for the CUDA build.
	Reason string
}

// env is what MaybeHandOff needs from the process, injectable for tests.
type env struct {
	cudaBuild  bool
	stderr     io.Writer
	lookup     func(string) (string, bool)
	environ    func() []string
	executable func() (string, error)
	probe      func() Probe
	exec       func(path string, argv, envv []string) error
}

func processEnv() env {
	return env{cudaBuild: cudaBuild, stderr: os.Stderr, lookup: os.LookupEnv, environ: os.Environ, executable: os.Executable,
		probe: Detect, exec: syscall.Exec}
}

// MaybeHandOff is called first thing in main with os.Args. In the CPU build, when a GPU is
// visible and the CUDA build (mdm-gpu-cuda) is installed next to this executable, it
// replaces the process with the CUDA build, same arguments and environment, and does not
// return. Otherwise it returns a Decision whose Reason the CLI logs once ("running on the
// CPU: …") when it ends up on the CPU. A non-nil error means the exec itself failed (the
// process continues on this binary; Reason says so). See the package documentation.
func MaybeHandOff(args []string) (Decision, error) { return maybeHandOff(args, processEnv()) }

func maybeHandOff(args []string, e env) (Decision, error) {
	d, err := decide(args, e)
	if e.stderr != nil && envOn(e.lookup, EnvHandOffVerbose) {
		switch {
		case d.CUDABuild:
			fmt.Fprintf(e.stderr, "mdm-gpu: hand-off: this is the CUDA build (handed off: %v)\n", d.HandedOff)
		case d.HandOff && err == nil:
			fmt.Fprintf(e.stderr, "mdm-gpu: hand-off: handed off to %s\n", d.Target)
		default:
			fmt.Fprintf(e.stderr, "mdm-gpu: hand-off: staying on the CPU build: %s\n", d.Reason)
		}
	}
	return d, err
}

func envOn(lookup func(string) (string, bool), name string) bool {
	v, ok := lookup(name)
	v = strings.ToLower(strings.TrimSpace(v))
	return ok && v != "" && v != "0" && v != "false" && v != "no" && v != "off"
}

func decide(args []string, e env) (Decision, error) {
	d := Decision{CUDABuild: e.cudaBuild, HandedOff: envOn(e.lookup, EnvHandedOff)}
	if e.cudaBuild {
		return d, nil
	}
	if envOn(e.lookup, EnvNoHandOff) {
		d.Reason = EnvNoHandOff + " is set"
		return d, nil
	}
	if d.HandedOff {
		d.Reason = EnvHandedOff + " is set but this is not the CUDA build (is " + CUDABinaryName + " a CPU build?); not handing off again"
		return d, nil
	}
	if dev := deviceArg(args); dev == "cpu" || dev == "sim" {
		d.Reason = "--device " + dev
		return d, nil
	}
	p := e.probe()
	d.Probe = &p
	if len(p.GPUs) == 0 {
		d.Reason = p.Reason
		return d, nil
	}
	target, err := findCUDABinary(e)
	d.Target = target
	if err != nil {
		d.Reason = fmt.Sprintf("found %s but %v", p.Summary(), err)
		return d, nil
	}
	argv := append([]string{target}, args[1:]...)
	envv := append(e.environ(), EnvHandedOff+"=1")
	d.HandOff = true
	if e.stderr != nil && envOn(e.lookup, EnvHandOffVerbose) {
		fmt.Fprintf(e.stderr, "mdm-gpu: hand-off: found %s; handing off to %s\n", p.Summary(), target)
	}
	err = e.exec(target, argv, envv)
	if err == nil { // only test doubles return from a successful exec
		return d, nil
	}
	d.Reason = fmt.Sprintf("found %s but starting the CUDA build %s failed: %v", p.Summary(), target, err)
	return d, fmt.Errorf("detect: hand-off to %s: %w", target, err)
}

// findCUDABinary returns the CUDA build: $MDM_CUDA_BINARY, or mdm-gpu-cuda beside the
// running executable.
func findCUDABinary(e env) (string, error) {
	self, err := e.executable()
	if err == nil {
		if r, err2 := filepath.EvalSymlinks(self); err2 == nil {
			self = r
		}
	}
	target := ""
	if v, ok := e.lookup(EnvCUDABinary); ok && v != "" {
		target = v
	} else if err != nil {
		return "", fmt.Errorf("cannot locate this executable to find %s beside it: %v", CUDABinaryName, err)
	} else {
		target = filepath.Join(filepath.Dir(self), CUDABinaryName)
	}
	fi, err := os.Stat(target)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return target, fmt.Errorf("no CUDA build at %s (install %s beside mdm-gpu, use the Docker image, or set %s)",
				target, CUDABinaryName, EnvCUDABinary)
		}
		return target, fmt.Errorf("cannot use the CUDA build at %s: %v", target, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return target, fmt.Errorf("the CUDA build at %s is not an executable file", target)
	}
	if self != "" {
		if sfi, err := os.Stat(self); err == nil && os.SameFile(fi, sfi) {
			return target, fmt.Errorf("%s is this (CPU) binary itself", target)
		}
	}
	return target, nil
}

// deviceArg returns the value of a --device flag in args ("" if none), lower-cased and
// without an ordinal.
func deviceArg(args []string) string {
	v := ""
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, f := range []string{"--device", "-device"} {
			if a == f && i+1 < len(args) {
				v = args[i+1]
			} else if rest, ok := strings.CutPrefix(a, f+"="); ok {
				v = rest
			}
		}
	}
	v = strings.ToLower(strings.TrimSpace(v))
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[:i]
	}
	return v
}
