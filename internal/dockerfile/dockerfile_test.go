package dockerfile

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	digest "github.com/opencontainers/go-digest"

	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
)

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

// ---- BuildKit's linter (the rules `docker build --check` applies) ----

// lintWarning is one warning of BuildKit's Dockerfile linter.
type lintWarning struct {
	Rule string
	Line int
	Msg  string
}

func (w lintWarning) String() string { return linter.LintFormatShort(w.Rule, w.Msg, w.Line) }

// offlineImages answers BuildKit's base-image metadata requests without a registry: every
// image is an empty Linux image for the requested platform with the default PATH. The lint
// rules only look at the image's platform (InvalidBaseImagePlatform) and environment
// (UndefinedVar); the image contents are never needed.
type offlineImages struct{}

func (offlineImages) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	osName, arch := "linux", runtime.GOARCH
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		osName, arch = opt.ImageOpt.Platform.OS, opt.ImageOpt.Platform.Architecture
	}
	cfg, err := json.Marshal(map[string]any{
		"os":           osName,
		"architecture": arch,
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	})
	return ref, digest.FromBytes(cfg), cfg, err
}

// lintDockerfile runs BuildKit's Dockerfile frontend over src the way `docker build --check`
// does (dockerfile2llb.DockerfileLint: parse, instructions.Parse with a linter.Linter, then
// the per-stage validations, for all stages) and returns the linter's warnings, collected
// through its Warn callback. A `# check=` directive in src is honoured, as in
// `docker build --check`. The error is a parse or conversion error.
func lintDockerfile(src []byte) ([]lintWarning, error) {
	var warnings []lintWarning
	_, err := dockerfile2llb.Dockerfile2LLB(context.Background(), src, dockerfile2llb.ConvertOpt{
		MetaResolver: offlineImages{},
		AllStages:    true, // lint every stage, not only those the final one depends on
		Warn: func(rule, _, _, msg string, loc []parser.Range) {
			warnings = append(warnings, lintWarning{Rule: rule, Line: startLine(loc), Msg: msg})
		},
	})
	return warnings, err
}

// ---- the project's own rules, on BuildKit's AST and typed instructions ----

// dockerfile is a Dockerfile parsed by BuildKit.
type dockerfile struct {
	src      string
	ast      *parser.Result
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand // ARGs before the first FROM
}

// parseDockerfile parses src with BuildKit's parser and instruction parser. Lint warnings
// are not collected here (lintDockerfile reports them, with the rules instructions.Parse
// does not run): the linter given to instructions.Parse skips every rule.
func parseDockerfile(src string) (*dockerfile, error) {
	res, err := parser.Parse(strings.NewReader(src))
	if err != nil {
		return nil, err
	}
	stages, metaArgs, err := instructions.Parse(res.AST, linter.New(&linter.Config{SkipAll: true}))
	if err != nil {
		return nil, err
	}
	return &dockerfile{src: src, ast: res, stages: stages, metaArgs: metaArgs}, nil
}

// headerComments returns the comment lines above the first instruction, without the '#'.
func (df *dockerfile) headerComments() string {
	first := len(strings.Split(df.src, "\n"))
	if len(df.ast.AST.Children) > 0 {
		first = df.ast.AST.Children[0].StartLine
	}
	var b strings.Builder
	for i, l := range strings.Split(df.src, "\n") {
		if i+1 >= first {
			break
		}
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "#") {
			b.WriteString(strings.TrimSpace(strings.TrimPrefix(l, "#")) + "\n")
		}
	}
	return b.String()
}

// baseImages returns each stage's base image with the default values of the ARGs declared
// before the first FROM substituted, or "" for a stage built on an earlier stage.
// unresolved lists variables without a default.
func (df *dockerfile) baseImages() (images []string, unresolved [][]string) {
	var env []string
	for _, a := range df.metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				env = append(env, kv.Key+"="+*kv.Value)
			}
		}
	}
	lex := shell.NewLex(df.ast.EscapeToken)
	seen := map[string]bool{}
	for _, st := range df.stages {
		img, unmatched, err := lex.ProcessWord(st.BaseName, shell.EnvsFromSlice(env))
		if err != nil {
			img = st.BaseName
		}
		var missing []string
		for v := range unmatched {
			missing = append(missing, v)
		}
		slices.Sort(missing)
		if seen[strings.ToLower(img)] {
			img = ""
		}
		images = append(images, img)
		unresolved = append(unresolved, missing)
		if st.Name != "" {
			seen[strings.ToLower(st.Name)] = true
		}
	}
	return images, unresolved
}

// line is the first line of an instruction (or FROM) in the Dockerfile, 1-based.
func line(c interface{ Location() []parser.Range }) int { return startLine(c.Location()) }

func startLine(loc []parser.Range) int {
	if len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

// pinnedTag reports whether image names a version: a tag other than latest, or a digest.
func pinnedTag(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	tag := ""
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		tag = image[i+1:]
	}
	return tag != "" && tag != "latest" && !strings.Contains(image, "$")
}

var (
	reSimpleCmd = regexp.MustCompile(`&&|\|\||[;|\n]`)
	reURL       = regexp.MustCompile(`^https?://`)
	rePipeToSh  = regexp.MustCompile(`\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|da|z)?sh\b`)
)

// simpleCommands splits a shell command line into its simple commands' words (quotes
// trimmed; good enough for the package-manager calls checked here).
func simpleCommands(script string) [][]string {
	var cmds [][]string
	for _, part := range reSimpleCmd.Split(script, -1) {
		var words []string
		for _, w := range strings.Fields(part) {
			words = append(words, strings.Trim(w, `"'`))
		}
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	return cmds
}

// runScript is the shell text of a RUN: its command line and any heredoc bodies.
func runScript(c *instructions.RunCommand) string {
	s := strings.Join(c.CmdLine, " ")
	for _, f := range c.Files {
		s += "\n" + f.Data
	}
	return s
}

// checkRun applies the apt, pip, curl|sh and sudo rules to one RUN instruction.
func checkRun(c *instructions.RunCommand) []error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("line %d: "+format, append([]any{line(c)}, a...)...))
	}
	script := runScript(c)
	if rePipeToSh.MatchString(script) {
		bad("no curl|sh: download with a checksum, or use a package")
	}
	for _, w := range simpleCommands(script) {
		cmd := path.Base(w[0])
		if cmd == "sudo" {
			bad("no sudo in RUN (the build runs as root; switch with USER)")
			continue
		}
		switch {
		case (cmd == "apt-get" || cmd == "apt") && slices.Contains(w, "install"):
			if !slices.Contains(w, "--no-install-recommends") || !(slices.Contains(w, "-y") || slices.Contains(w, "--yes") || slices.Contains(w, "--assume-yes")) {
				bad("%s install needs -y --no-install-recommends", cmd)
			}
			if !strings.Contains(script, "apt-get update") || !strings.Contains(script, "rm -rf /var/lib/apt/lists/*") {
				bad("%s install must share its RUN with apt-get update and rm -rf /var/lib/apt/lists/*", cmd)
			}
		case (cmd == "apt-get" || cmd == "apt") && (slices.Contains(w, "upgrade") || slices.Contains(w, "dist-upgrade") || slices.Contains(w, "full-upgrade")):
			bad("no %s upgrade in images: pin the base image instead", cmd)
		case (cmd == "pip" || cmd == "pip3" || (strings.HasPrefix(cmd, "python") && slices.Contains(w, "pip"))) && slices.Contains(w, "install"):
			if !slices.Contains(w, "--no-cache-dir") {
				bad("pip install must use --no-cache-dir")
			}
			args := w[slices.Index(w, "install")+1:]
			for i := 0; i < len(args); i++ {
				a := args[i]
				switch {
				case a == "-r" || a == "--requirement" || a == "-c" || a == "--constraint":
					i++ // a file, not a package
				case strings.HasPrefix(a, "-"):
				case !strings.Contains(a, "=="):
					bad("pip install %s: pin the version (==)", a)
				}
			}
		}
	}
	return errs
}

// Images the project's Dockerfile must use (CI's CUDA toolkit is 11.8).
const (
	buildImage = "nvidia/cuda:11.8.0-devel-ubuntu22.04"
	runImage   = "nvidia/cuda:11.8.0-runtime-ubuntu22.04"
)

// checkDockerfile applies the project's rules to a parsed Dockerfile.
func checkDockerfile(df *dockerfile) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if v, _, _, ok := parser.ParseDirective("check", []byte(df.src)); ok && strings.Contains(v, "skip") {
		bad("the Dockerfile skips BuildKit lint rules (# check=%s); fix the warnings instead", v)
	}
	if len(df.stages) < 2 {
		bad("want a multi-stage build, got %d stage(s)", len(df.stages))
	}
	if len(df.stages) == 0 {
		return errs
	}

	images, unresolved := df.baseImages()
	for i, st := range df.stages {
		switch {
		case images[i] == "": // an earlier stage
		case len(unresolved[i]) > 0:
			bad("line %d: base image %q uses ARGs without a default: %v", startLine(st.Location), st.BaseName, unresolved[i])
		case !pinnedTag(images[i]):
			bad("line %d: base image %q must be pinned to a version tag", startLine(st.Location), images[i])
		}
	}
	if !slices.Contains(images, buildImage) {
		bad("no build stage FROM %s (CI's toolkit is 11.8): %q", buildImage, images)
	}
	if last := images[len(images)-1]; last != runImage {
		bad("final image %q, want %s (slim, with cuBLAS)", last, runImage)
	}

	for _, st := range df.stages {
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.AddCommand:
				for _, src := range c.SourcePaths {
					if reURL.MatchString(src) {
						bad("line %d: ADD of a URL (%s); download in a RUN with a checksum, or COPY", line(c), src)
					}
				}
			case *instructions.RunCommand:
				errs = append(errs, checkRun(c)...)
			}
		}
	}

	final := df.stages[len(df.stages)-1]
	var user string
	var entry *instructions.EntrypointCommand
	var copied []string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entry = c
		case *instructions.CopyCommand:
			for _, src := range c.SourcePaths {
				copied = append(copied, path.Base(src))
			}
		}
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		bad("final stage runs as %q; want a non-root USER", user)
	}
	switch {
	case entry == nil:
		bad("final stage has no ENTRYPOINT")
	case entry.PrependShell:
		bad("line %d: ENTRYPOINT %q must be in exec (JSON) form", line(entry), strings.Join(entry.CmdLine, " "))
	}
	for _, b := range []string{"mdm-gpu", "mdm-gpu-cuda", "mdm-detect"} {
		if !slices.Contains(copied, b) {
			bad("final stage does not copy %s", b)
		}
	}

	comments := df.headerComments()
	for _, doc := range []string{"docker build -t mdm-gpu .", "docker run --rm --gpus all", "MDM_NO_HANDOFF"} {
		if !strings.Contains(comments, doc) {
			bad("usage comment at the top lacks %q", doc)
		}
	}
	return errs
}

// checkDockerignore checks that the build context leaves out history, build outputs and
// prebuilt kernels (the image builds its own).
func checkDockerignore(text string) []error {
	lines := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	var errs []error
	for _, want := range []string{".git", "build", "dist", "cuda/kernelsbin/*.fatbin"} {
		if !lines[want] {
			errs = append(errs, fmt.Errorf(".dockerignore lacks %q", want))
		}
	}
	return errs
}

// ---- tests ----

func TestDockerfileBuildKitLint(t *testing.T) {
	warnings, err := lintDockerfile([]byte(readRepoFile(t, "Dockerfile")))
	if err != nil {
		t.Fatalf("BuildKit cannot parse the Dockerfile: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("Dockerfile:%d: %s: %s", w.Line, w.Rule, w.Msg)
	}
}

func TestDockerfile(t *testing.T) {
	df, err := parseDockerfile(readRepoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("BuildKit cannot parse the Dockerfile: %v", err)
	}
	for _, err := range checkDockerfile(df) {
		t.Error(err)
	}
}

func TestDockerignore(t *testing.T) {
	for _, err := range checkDockerignore(readRepoFile(t, ".dockerignore")) {
		t.Error(err)
	}
}

func TestReadmeDocumentsDocker(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	for _, doc := range []string{"docker build -t mdm-gpu .", "docker run --rm --gpus all"} {
		if !strings.Contains(readme, doc) {
			t.Errorf("README.md lacks %q", doc)
		}
	}
}

// badDockerfile breaks BuildKit's rules and the project's on purpose.
const badDockerfile = `from ubuntu:latest AS Build
ARG API_TOKEN=changeme
RUN apt-get update && apt-get install -y curl
RUN apt-get install --no-install-recommends -y git
RUN apt-get upgrade -y && pip install numpy --no-cache-dir && pip3 install torch==2.1.0
RUN curl -fsSL https://example.com/install.sh | sh && sudo make install
ADD https://example.com/tool.tar.gz /opt/
ENV FOO $UNDEFINED_THING
WORKDIR src
FROM nvidia/cuda
COPY --from=Build /out/mdm-gpu /usr/local/bin/
ENTRYPOINT /usr/local/bin/mdm-gpu
CMD ["--help"]
`

func TestChecksCatchProblems(t *testing.T) {
	warnings, err := lintDockerfile([]byte(badDockerfile))
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	got := map[string]bool{}
	for _, w := range warnings {
		got[w.Rule] = true
		t.Logf("lint: %s", w)
	}
	for _, rule := range []string{
		linter.RuleFromAsCasing.Name, linter.RuleStageNameCasing.Name, linter.RuleSecretsUsedInArgOrEnv.Name,
		linter.RuleUndefinedVar.Name, linter.RuleLegacyKeyValueFormat.Name, linter.RuleWorkdirRelativePath.Name,
		linter.RuleJSONArgsRecommended.Name,
	} {
		if !got[rule] {
			t.Errorf("BuildKit's linter did not report %s", rule)
		}
	}
	const argFrom = "ARG TAG\nFROM alpine:${TAG}\n"
	warnings, _ = lintDockerfile([]byte(argFrom)) // the conversion fails too: "alpine:" is no image
	if !slices.ContainsFunc(warnings, func(w lintWarning) bool { return w.Rule == linter.RuleInvalidDefaultArgInFrom.Name }) {
		t.Errorf("BuildKit's linter did not report %s: %v", linter.RuleInvalidDefaultArgInFrom.Name, warnings)
	}
	if _, err := lintDockerfile([]byte("RUN true\n")); err == nil {
		t.Error("a Dockerfile without FROM lints without error")
	}
	if _, err := parseDockerfile("RUN true\n"); err == nil {
		t.Error("a Dockerfile without FROM parses without error")
	}

	df, err := parseDockerfile(badDockerfile)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	errs := checkDockerfile(df)
	var msgs []string
	for _, err := range errs {
		msgs = append(msgs, err.Error())
		t.Logf("check: %v", err)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`line 1: base image "ubuntu:latest" must be pinned`,
		`line 10: base image "nvidia/cuda" must be pinned`,
		"no build stage FROM " + buildImage,
		`final image "nvidia/cuda"`,
		"line 3: apt-get install needs -y --no-install-recommends",
		"line 4: apt-get install must share its RUN with apt-get update",
		"line 5: no apt-get upgrade",
		"line 5: pip install numpy: pin the version",
		"line 6: no curl|sh",
		"line 6: no sudo",
		"line 7: ADD of a URL",
		`final stage runs as ""; want a non-root USER`,
		"line 12: ENTRYPOINT",
		"final stage does not copy mdm-gpu-cuda",
		"final stage does not copy mdm-detect",
		`usage comment at the top lacks "docker run --rm --gpus all"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("checkDockerfile did not report %q", want)
		}
	}
	if strings.Contains(all, "torch") {
		t.Errorf("pinned pip package torch==2.1.0 reported")
	}
	if slices.Contains(msgs, "final stage does not copy mdm-gpu") {
		t.Errorf("copied mdm-gpu reported missing")
	}

	df, err = parseDockerfile(argFrom)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if all := fmt.Sprint(checkDockerfile(df)); !strings.Contains(all, "uses ARGs without a default: [TAG]") {
		t.Errorf("checkDockerfile did not report the ARG without default: %s", all)
	}

	df, err = parseDockerfile("# check=skip=all\nFROM " + buildImage + " AS build\nFROM " + runImage + "\nUSER 0:0\n")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	all = fmt.Sprint(checkDockerfile(df))
	for _, want := range []string{"skips BuildKit lint rules", `runs as "0:0"`, "no ENTRYPOINT"} {
		if !strings.Contains(all, want) {
			t.Errorf("checkDockerfile did not report %q in %s", want, all)
		}
	}

	if errs := checkDockerignore("build\n*.md\n"); len(errs) != 3 {
		t.Errorf("checkDockerignore: %d errors, want 3 (.git, dist, fatbins): %v", len(errs), errs)
	}
}
