package detect

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeEnv is an injectable process environment for maybeHandOff.
type fakeEnv struct {
	vars    map[string]string
	self    string
	probe   Probe
	probed  int
	execed  []string // path, argv..., then env entries with MDM_
	execErr error
}

func (f *fakeEnv) env() env {
	return env{
		lookup:     func(k string) (string, bool) { v, ok := f.vars[k]; return v, ok },
		environ:    func() []string { return []string{"PATH=/usr/bin", "HOME=/root"} },
		executable: func() (string, error) { return f.self, nil },
		probe:      func() Probe { f.probed++; return f.probe },
		exec: func(path string, argv, envv []string) error {
			f.execed = append([]string{path}, argv...)
			for _, e := range envv {
				if strings.HasPrefix(e, "MDM_") {
					f.execed = append(f.execed, e)
				}
			}
			return f.execErr
		},
	}
}

var oneGPU = Probe{GPUs: []GPU{{Index: 0, Name: "NVIDIA H200"}}, Driver: "550.54"}

// installFakeCUDABuild makes dir/mdm-gpu (this binary) and dir/mdm-gpu-cuda (a script).
func installFakeCUDABuild(t *testing.T, script string) (self, target string) {
	t.Helper()
	dir := t.TempDir()
	self, target = filepath.Join(dir, "mdm-gpu"), filepath.Join(dir, CUDABinaryName)
	os.WriteFile(self, []byte("#!/bin/sh\nexit 99\n"), 0o755)
	os.WriteFile(target, []byte(script), 0o755)
	return self, target
}

func TestHandOffDecisions(t *testing.T) {
	self, target := installFakeCUDABuild(t, "#!/bin/sh\nexit 0\n")
	noExec := filepath.Join(t.TempDir(), "mdm-gpu")
	os.WriteFile(noExec, nil, 0o755)
	notExecutableDir := t.TempDir()
	notExecutable := filepath.Join(notExecutableDir, "mdm-gpu")
	os.WriteFile(notExecutable, nil, 0o755)
	os.WriteFile(filepath.Join(notExecutableDir, CUDABinaryName), nil, 0o644)

	for _, c := range []struct {
		name      string
		cudaBuild bool
		vars      map[string]string
		args      []string
		self      string
		probe     Probe
		wantExec  bool
		wantProbe bool
		reason    string
	}{
		{name: "cuda build never hands off", cudaBuild: true, args: []string{"mdm-gpu", "train"}, self: self, probe: oneGPU},
		{name: "disabled", vars: map[string]string{EnvNoHandOff: "1"}, args: []string{"mdm-gpu"}, self: self, probe: oneGPU,
			reason: "MDM_NO_HANDOFF is set"},
		{name: "disable=0 does not disable", vars: map[string]string{EnvNoHandOff: "0"}, args: []string{"mdm-gpu"}, self: self,
			probe: oneGPU, wantExec: true, wantProbe: true},
		{name: "loop guard", vars: map[string]string{EnvHandedOff: "1"}, args: []string{"mdm-gpu"}, self: self, probe: oneGPU,
			reason: "not handing off again"},
		{name: "device cpu", args: []string{"mdm-gpu", "train", "--device", "cpu"}, self: self, probe: oneGPU, reason: "--device cpu"},
		{name: "device=sim", args: []string{"mdm-gpu", "train", "--device=sim"}, self: self, probe: oneGPU, reason: "--device sim"},
		{name: "device cuda:1", args: []string{"mdm-gpu", "train", "--device", "cuda:1"}, self: self, probe: oneGPU,
			wantExec: true, wantProbe: true},
		{name: "no GPU", args: []string{"mdm-gpu", "train"}, self: self, probe: Probe{Reason: "no NVIDIA driver (libnvidia-ml.so.1 not found)"},
			wantProbe: true, reason: "no NVIDIA driver"},
		{name: "no CUDA build", args: []string{"mdm-gpu"}, self: noExec, probe: oneGPU, wantProbe: true,
			reason: "found 1 GPU: NVIDIA H200 (driver 550.54) but no CUDA build at " + filepath.Join(filepath.Dir(noExec), CUDABinaryName)},
		{name: "CUDA build not executable", args: []string{"mdm-gpu"}, self: notExecutable, probe: oneGPU, wantProbe: true,
			reason: "not an executable file"},
		{name: "override path", vars: map[string]string{EnvCUDABinary: target}, args: []string{"mdm-gpu"}, self: noExec,
			probe: oneGPU, wantExec: true, wantProbe: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeEnv{vars: c.vars, self: c.self, probe: c.probe}
			if f.vars == nil {
				f.vars = map[string]string{}
			}
			e := f.env()
			e.cudaBuild = c.cudaBuild
			d, err := maybeHandOff(c.args, e)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(f.execed) > 0; got != c.wantExec {
				t.Errorf("exec = %v, want %v (decision %+v)", f.execed, c.wantExec, d)
			}
			if got := f.probed > 0; got != c.wantProbe {
				t.Errorf("probed = %v, want %v", got, c.wantProbe)
			}
			if !strings.Contains(d.Reason, c.reason) || (c.reason == "" && d.Reason != "") {
				t.Errorf("Reason = %q, want %q", d.Reason, c.reason)
			}
			if d.CUDABuild != c.cudaBuild {
				t.Errorf("CUDABuild = %v", d.CUDABuild)
			}
		})
	}
}

func TestHandOffExecArgs(t *testing.T) {
	self, target := installFakeCUDABuild(t, "#!/bin/sh\nexit 0\n")
	f := &fakeEnv{vars: map[string]string{}, self: self, probe: oneGPU}
	args := []string{"/usr/bin/mdm-gpu", "train", "--preset", "tiny", "--device", "cuda"}
	if _, err := maybeHandOff(args, f.env()); err != nil {
		t.Fatal(err)
	}
	want := []string{target, target, "train", "--preset", "tiny", "--device", "cuda", "MDM_HANDED_OFF=1"}
	if !reflect.DeepEqual(f.execed, want) {
		t.Errorf("exec %q, want %q", f.execed, want)
	}
	// A failing exec is an error and a reason; the caller continues on the CPU.
	f = &fakeEnv{vars: map[string]string{}, self: self, probe: oneGPU, execErr: errors.New("exec format error")}
	d, err := maybeHandOff(args, f.env())
	if err == nil || !strings.Contains(d.Reason, "exec format error") {
		t.Errorf("failed exec: %v, %q", err, d.Reason)
	}
}

// TestHandOffRealExec runs the real syscall.Exec in a child process (never in the test
// process itself): the child, with a probe stub saying "GPU present", must be replaced by
// the fake mdm-gpu-cuda script, which records its arguments and environment.
func TestHandOffRealExec(t *testing.T) {
	if self := os.Getenv("MDM_TEST_HANDOFF_SELF"); self != "" {
		e := processEnv()
		e.cudaBuild = false // also when this test binary is built with -tags cuda
		e.executable = func() (string, error) { return self, nil }
		e.probe = func() Probe { return oneGPU }
		d, err := maybeHandOff([]string{"mdm-gpu", "sample", "--num", "4"}, e)
		fmt.Fprintf(os.Stderr, "hand-off returned: %+v, %v\n", d, err)
		os.Exit(2)
	}
	out := filepath.Join(t.TempDir(), "out.txt")
	self, _ := installFakeCUDABuild(t, "#!/bin/sh\necho \"$0 $* handed=$MDM_HANDED_OFF keep=$MDM_KEEP\" > "+out+"\nexit 7\n")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandOffRealExec$")
	cmd.Env = append(os.Environ(), "MDM_TEST_HANDOFF_SELF="+self, "MDM_KEEP=yes")
	msg, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("child: %v (want exit status 7 from the CUDA build)\n%s", err, msg)
	}
	got, _ := os.ReadFile(out)
	want := filepath.Join(filepath.Dir(self), CUDABinaryName) + " sample --num 4 handed=1 keep=yes\n"
	if string(got) != want {
		t.Errorf("CUDA build saw %q, want %q", got, want)
	}
}

func TestHandOffVerbose(t *testing.T) {
	self, target := installFakeCUDABuild(t, "#!/bin/sh\nexit 0\n")
	var buf strings.Builder
	f := &fakeEnv{vars: map[string]string{EnvHandOffVerbose: "1"}, self: self, probe: oneGPU}
	e := f.env()
	e.stderr = &buf
	if _, err := maybeHandOff([]string{"mdm-gpu"}, e); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "handing off to "+target) {
		t.Errorf("verbose output %q", buf.String())
	}
	buf.Reset()
	f.probe = Probe{Reason: "no NVIDIA driver"}
	e = f.env()
	e.stderr = &buf
	maybeHandOff([]string{"mdm-gpu"}, e)
	if got := buf.String(); got != "mdm-gpu: hand-off: staying on the CPU build: no NVIDIA driver\n" {
		t.Errorf("verbose output %q", got)
	}
	buf.Reset()
	f.vars = map[string]string{}
	e = f.env()
	e.stderr = &buf
	maybeHandOff([]string{"mdm-gpu"}, e)
	if buf.Len() != 0 {
		t.Errorf("output without %s: %q", EnvHandOffVerbose, buf.String())
	}
}

func TestDeviceArg(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"x", "train"}, ""},
		{[]string{"x", "train", "--device", "CPU"}, "cpu"},
		{[]string{"x", "--device=cuda:3", "train"}, "cuda"},
		{[]string{"x", "-device", "sim"}, "sim"},
		{[]string{"x", "--device"}, ""},
		{[]string{"x", "--", "--device", "cpu"}, ""},
	} {
		if got := deviceArg(c.args); got != c.want {
			t.Errorf("deviceArg(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}
