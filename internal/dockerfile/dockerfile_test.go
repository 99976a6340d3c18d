package dockerfile

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
)

// instr is one Dockerfile instruction with its continuation lines joined.
type instr struct {
	line int
	cmd  string // upper-case keyword
	args string
}

func parse(t *testing.T, text string) (ins []instr, comments string) {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "#") {
			comments += l + "\n"
			continue
		}
		if l == "" {
			continue
		}
		start := i + 1
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			l = strings.TrimSuffix(l, "\\") + " " + next
		}
		kw, rest, _ := strings.Cut(l, " ")
		ins = append(ins, instr{line: start, cmd: strings.ToUpper(kw), args: strings.TrimSpace(rest)})
	}
	return ins, comments
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	root := testutil.RepoRoot()
	if root == "" {
		t.Skip("repository root not found")
	}
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfile(t *testing.T) {
	ins, comments := parse(t, readRepoFile(t, "Dockerfile"))
	args := map[string]string{} // ARG defaults declared before the first FROM
	var stages [][]instr
	for _, in := range ins {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case in.cmd == "FROM":
			stages = append(stages, []instr{in})
		case len(stages) > 0:
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		default:
			t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	expand := regexp.MustCompile(`\$\{?(\w+)\}?`)
	var images []string
	for _, st := range stages {
		img := strings.Fields(st[0].args)[0]
		img = expand.ReplaceAllStringFunc(img, func(m string) string {
			return args[strings.Trim(m, "${}")]
		})
		images = append(images, img)
		name, tag, ok := strings.Cut(img, ":")
		if !ok || tag == "" || tag == "latest" || strings.Contains(img, "$") {
			t.Errorf("line %d: base image %q must be pinned to a version tag", st[0].line, img)
		}
		_ = name
	}
	hasImage := func(want string) bool {
		for _, im := range images {
			if im == want {
				return true
			}
		}
		return false
	}
	if !hasImage("nvidia/cuda:11.8.0-devel-ubuntu22.04") {
		t.Errorf("no build stage FROM nvidia/cuda:11.8.0-devel-ubuntu22.04 (CI's toolkit is 11.8): %v", images)
	}
	if last := images[len(images)-1]; last != "nvidia/cuda:11.8.0-runtime-ubuntu22.04" {
		t.Errorf("final image %q, want nvidia/cuda:11.8.0-runtime-ubuntu22.04 (slim, with cuBLAS)", last)
	}
	for _, st := range stages {
		for _, in := range st {
			a := in.args
			if in.cmd == "ADD" && regexp.MustCompile(`https?://`).MatchString(a) {
				t.Errorf("line %d: ADD of a URL; download in a RUN with a checksum, or COPY", in.line)
			}
			if in.cmd != "RUN" {
				continue
			}
			if strings.Contains(a, "apt-get install") {
				if !strings.Contains(a, "--no-install-recommends") || !regexp.MustCompile(`apt-get install (-\S+ )*-y`).MatchString(a) {
					t.Errorf("line %d: apt-get install needs -y --no-install-recommends", in.line)
				}
				if !strings.Contains(a, "apt-get update") || !strings.Contains(a, "rm -rf /var/lib/apt/lists/*") {
					t.Errorf("line %d: apt-get install must share its RUN with apt-get update and rm -rf /var/lib/apt/lists/*", in.line)
				}
			}
			if strings.Contains(a, "apt-get upgrade") || strings.Contains(a, "dist-upgrade") {
				t.Errorf("line %d: no apt-get upgrade in images", in.line)
			}
			if m := regexp.MustCompile(`pip3? install ([^&;]*)`).FindStringSubmatch(a); m != nil {
				if !strings.Contains(m[1], "--no-cache-dir") || !strings.Contains(m[1], "==") {
					t.Errorf("line %d: pip install must pin versions (==) and use --no-cache-dir", in.line)
				}
			}
			if regexp.MustCompile(`(curl|wget)[^|]*\|\s*(ba)?sh`).MatchString(a) || strings.Contains(a, "sudo ") {
				t.Errorf("line %d: no curl|sh and no sudo", in.line)
			}
		}
	}
	final := stages[len(stages)-1]
	user, entry := "", ""
	copied := ""
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "COPY":
			copied += in.args + " "
		}
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") {
		t.Errorf("final stage runs as %q; want a non-root USER", user)
	}
	if !strings.HasPrefix(entry, "[") {
		t.Errorf("ENTRYPOINT %q must be in exec (JSON) form", entry)
	}
	for _, b := range []string{"mdm-gpu ", "mdm-gpu-cuda", "mdm-detect"} {
		if !strings.Contains(copied, b) {
			t.Errorf("final stage does not copy %s", strings.TrimSpace(b))
		}
	}
	for _, doc := range []string{"docker build -t mdm-gpu .", "docker run --rm --gpus all", "MDM_NO_HANDOFF"} {
		if !strings.Contains(comments, doc) {
			t.Errorf("usage comment lacks %q", doc)
		}
	}
}

func TestDockerignore(t *testing.T) {
	lines := map[string]bool{}
	for _, l := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{".git", "build", "dist", "cuda/kernelsbin/*.fatbin"} {
		if !lines[want] {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}
