package opstest

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/mdm-gpu/mdm-gpu/engine/ops"
)

// GuardChecker is an optional interface of a device under test that surrounds every
// allocation with guard bands (a canary pattern, e.g. NaN bytes, on either side of the
// tensor) and can verify them. The contract's tensors are opaque and have no offset
// views into larger buffers, so the harness cannot place sentinels itself: the device
// does it in its allocator (the simulated and real GPU backends' WithGuardBands option).
//
// CheckGuards returns an error naming the damaged allocation, the side and the offset
// when the guard band of any live allocation has been overwritten, and nil otherwise
// (also when the device runs without guard bands). With Options.Guard set, Check calls it
// after uploading a case's inputs and after every run of the op. Wrapper backends expose
// the backend they wrap through Unwrapper, and the harness looks for a GuardChecker along
// that chain.
type GuardChecker interface {
	CheckGuards() error
}

// Unwrapper is implemented by wrapper backends (checked, traced): Unwrap returns the
// wrapped backend.
type Unwrapper interface {
	Unwrap() ops.Backend
}

// FindGuardChecker returns the first GuardChecker on b's wrapper chain, or nil.
func FindGuardChecker(b ops.Backend) GuardChecker {
	for i := 0; b != nil && i < 64; i++ {
		if g, ok := b.(GuardChecker); ok {
			return g
		}
		u, ok := b.(Unwrapper)
		if !ok {
			return nil
		}
		b = u.Unwrap()
	}
	return nil
}

// Options configure Check and Run.
type Options struct {
	// Short skips Large cases (Run also skips them under go test -short).
	Short bool
	// Filter, if set, selects the cases to run (Check also applies its filter argument).
	Filter func(Case) bool
	// Cases replaces the table returned by Cases (for tests of the harness itself).
	Cases []Case
	// FailUnsupported turns cases the device under test does not support into failures.
	FailUnsupported bool
	// Guard checks guard bands through the device's GuardChecker after every upload and
	// every run. A device without one is noted in each Result, not failed.
	Guard bool
	// RefDType selects the reference's precision for F32 cases: 0 runs the reference in
	// the case dtype; ops.F64 runs it in float64 (arguments that follow the case dtype and
	// accumulators become F64), which exercises the tolerances. BF16 cases always use
	// an F64 oracle and an honest F32 reference.
	RefDType ops.DType
	// Report, if set, receives every case's result as it completes.
	Report func(Result)
}

// Status is the outcome of one case.
type Status uint8

const (
	// Passed: the device matched the reference within tolerance, twice identically.
	Passed Status = iota + 1
	// Failed: a mismatch, a nondeterminism, an error, a damaged guard band or a panic.
	Failed
	// Unsupported: the device under test does not implement the case (Supports returned
	// false or the op returned an error wrapping ops.ErrUnsupported). Never a pass.
	Unsupported
	// Skipped: a Large case under Options.Short.
	Skipped
)

// String returns PASS, FAIL, UNSUPPORTED or SKIP.
func (s Status) String() string {
	switch s {
	case Passed:
		return "PASS"
	case Failed:
		return "FAIL"
	case Unsupported:
		return "UNSUPPORTED"
	case Skipped:
		return "SKIP"
	}
	return "Status(?)"
}

// Result is the outcome of one case.
type Result struct {
	Case   Case
	Status Status
	Err    error    // why the case failed or is unsupported
	Notes  []string // e.g. that guard bands could not be checked
	// Ratio is the largest observed error as a fraction of what the tolerance allows
	// (1 = at the limit; 0 for outputs compared exactly). Use it to calibrate tolerances.
	Ratio   float64
	Elapsed time.Duration
}

// Check runs every case of the table (Options.Cases, or Cases()) that filter (nil: all)
// and Options.Filter accept on the reference ref and the device under test dut and
// compares them (see CheckCase). It returns nil when no case failed (and, with
// FailUnsupported, none was unsupported); otherwise an error listing each failure. A
// filter that selects no case at all is an error too, so that a renamed case cannot turn
// a check into a silent pass.
func Check(ref, dut ops.Backend, filter func(Case) bool, opts Options) error {
	cases := opts.Cases
	if cases == nil {
		cases = Cases()
	}
	var fails []string
	var nMatch, nRun, nFail, nUnsup int
	for _, c := range cases {
		if (filter != nil && !filter(c)) || (opts.Filter != nil && !opts.Filter(c)) {
			continue
		}
		nMatch++
		r := CheckCase(ref, dut, c, opts)
		if opts.Report != nil {
			opts.Report(r)
		}
		switch r.Status {
		case Skipped:
			continue
		case Failed:
			nFail++
			fails = append(fails, fmt.Sprintf("%s: %v", c.Name, r.Err))
		case Unsupported:
			nUnsup++
			if opts.FailUnsupported {
				fails = append(fails, fmt.Sprintf("%s: unsupported: %v", c.Name, r.Err))
			}
		}
		nRun++
	}
	if nMatch == 0 {
		return fmt.Errorf("opstest: no case matches the filter (of %d cases)", len(cases))
	}
	if len(fails) == 0 {
		return nil
	}
	return fmt.Errorf("opstest: %s vs reference %s: %d of %d cases failed, %d unsupported:\n%s",
		dut.Name(), ref.Name(), nFail, nRun, nUnsup, strings.Join(fails, "\n"))
}

// Run runs the table (Options.Cases, or Cases()) as one subtest per case, named after the
// case. Failures are test errors; unsupported cases are skipped with an UNSUPPORTED
// message (errors with FailUnsupported); Large cases are skipped under -short. It logs a
// summary line at the end.
func Run(t *testing.T, ref, dut ops.Backend, opts Options) {
	t.Helper()
	opts.Short = opts.Short || testing.Short()
	cases := opts.Cases
	if cases == nil {
		cases = Cases()
	}
	count := map[Status]int{}
	matched := 0
	for _, c := range cases {
		if opts.Filter != nil && !opts.Filter(c) {
			continue
		}
		matched++
		t.Run(c.Name, func(t *testing.T) {
			r := CheckCase(ref, dut, c, opts)
			count[r.Status]++
			if opts.Report != nil {
				opts.Report(r)
			}
			for _, n := range r.Notes {
				t.Log(n)
			}
			switch r.Status {
			case Failed:
				t.Error(r.Err)
			case Unsupported:
				if opts.FailUnsupported {
					t.Errorf("UNSUPPORTED on %s: %v", dut.Name(), r.Err)
				} else {
					t.Skipf("UNSUPPORTED on %s: %v", dut.Name(), r.Err)
				}
			case Skipped:
				t.Skip(r.Err)
			}
		})
	}
	if matched == 0 {
		t.Errorf("opstest: no case matches the filter (of %d cases)", len(cases))
	}
	t.Logf("parity %s vs %s: %d passed, %d failed, %d unsupported, %d skipped", dut.Name(), ref.Name(),
		count[Passed], count[Failed], count[Unsupported], count[Skipped])
}

// Coverage returns an error naming every op of ops.AllOps that has no case in cases.
func Coverage(cases []Case) error {
	has := map[ops.Op]bool{}
	for _, c := range cases {
		has[c.Op] = true
	}
	var missing []string
	for _, o := range ops.AllOps() {
		if !has[o] {
			missing = append(missing, o.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("opstest: no parity case for %d op(s): %s", len(missing), strings.Join(missing, ", "))
	}
	return nil
}

// mainDType returns the dtype to pass to Supports for a run of c.
func mainDType(c *Case, t target) ops.DType {
	if !c.DType.Float() {
		return c.DType
	}
	return arg{kind: kFloat}.dtype(c.DType, t)
}

// runFailure marks an error as making the case unsupported rather than failed.
type unsupportedErr struct{ err error }

func (u unsupportedErr) Error() string { return u.err.Error() }
func (u unsupportedErr) Unwrap() error { return u.err }

// CheckCase runs one case: the device under test runs the op twice on the same inputs
// (its outputs must be bit-identical unless the case is NonDeterministic, it must not
// modify read-only inputs, Sync must succeed and guard bands must be intact), the
// reference runs it once (BF16 cases: an F64 oracle and an honest F32 reference), and
// every output is compared (see Tolerance). A panic in either backend is a failure.
func CheckCase(ref, dut ops.Backend, c Case, opts Options) (r Result) {
	start := time.Now()
	r.Case = c
	defer func() {
		if p := recover(); p != nil {
			r.Status = Failed
			r.Err = fmt.Errorf("panic: %v\n%s", p, firstLines(string(debug.Stack()), 16))
		}
		r.Elapsed = time.Since(start)
	}()
	if opts.Short && c.Size == Large {
		r.Status, r.Err = Skipped, errors.New("large case skipped in short mode")
		return r
	}
	if !dut.Supports(c.Op, c.DType) {
		r.Status, r.Err = Unsupported, fmt.Errorf("%s: Supports(%v, %v) = false", dut.Name(), c.Op, c.DType)
		return r
	}
	var gc GuardChecker
	if opts.Guard {
		if gc = FindGuardChecker(dut); gc == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("guard bands not checked: %s implements no opstest.GuardChecker", dut.Name()))
		}
	}
	in, err := c.makeInputs()
	if err != nil {
		r.Status, r.Err = Failed, err
		return r
	}
	got, err := runDUT(dut, &c, in, gc)
	if err != nil {
		var u unsupportedErr
		if errors.As(err, &u) {
			r.Status, r.Err = Unsupported, u.err
		} else {
			r.Status, r.Err = Failed, fmt.Errorf("device under test %s: %w", dut.Name(), err)
		}
		return r
	}
	if c.verify != nil {
		if err := c.verify(got); err != nil {
			r.Status, r.Err = Failed, fmt.Errorf("device under test %s: %w", dut.Name(), err)
			return r
		}
	}
	r.Ratio, err = compareCase(ref, &c, in, got, opts)
	if err != nil {
		r.Status, r.Err = Failed, err
		return r
	}
	r.Status = Passed
	return r
}

// runDUT runs the case twice on the device under test and returns the first run's
// outputs.
func runDUT(dut ops.Backend, c *Case, inp *inputs, gc GuardChecker) (map[string]*host, error) {
	inst, err := c.instantiate(dut, inp, forDUT)
	if err != nil {
		if errors.Is(err, ops.ErrUnsupported) {
			return nil, unsupportedErr{err}
		}
		return nil, err
	}
	defer inst.Free()
	if gc != nil {
		if err := gc.CheckGuards(); err != nil {
			return nil, fmt.Errorf("guard band damaged while uploading inputs: %w", err)
		}
	}
	var first map[string]*host
	runs := 2
	if c.NonDeterministic {
		runs = 1
	}
	for run := 1; run <= runs; run++ {
		if run > 1 {
			if err := inst.Reset(); err != nil {
				return nil, err
			}
		}
		if err := inst.Run(); err != nil {
			if errors.Is(err, ops.ErrUnsupported) {
				return nil, unsupportedErr{err}
			}
			return nil, fmt.Errorf("run %d: the op failed: %w", run, err)
		}
		if err := dut.Sync(); err != nil {
			return nil, fmt.Errorf("run %d: Sync after the op: %w", run, err)
		}
		if gc != nil {
			if err := gc.CheckGuards(); err != nil {
				return nil, fmt.Errorf("run %d: guard band damaged (out-of-bounds write): %w", run, err)
			}
		}
		if err := inst.checkInputs(); err != nil {
			return nil, fmt.Errorf("run %d: %w", run, err)
		}
		outs, err := inst.outputs()
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", run, err)
		}
		if run == 1 {
			first = outs
			continue
		}
		for _, a := range c.args {
			if a.role == in {
				continue
			}
			if k := firstBitDiff(first[a.name], outs[a.name]); k >= 0 {
				return nil, fmt.Errorf("not deterministic: output %s differs between two runs on the same inputs at %s: %s, then %s",
					a.name, Index(a.shape, k), first[a.name].fmtBits(k), outs[a.name].fmtBits(k))
			}
		}
	}
	return first, nil
}

// runRef runs the case once on the reference for the given target.
func runRef(ref ops.Backend, c *Case, inp *inputs, t target) (map[string]*host, error) {
	if dt := mainDType(c, t); !ref.Supports(c.Op, dt) {
		return nil, fmt.Errorf("reference %s does not support %v for %v", ref.Name(), c.Op, dt)
	}
	inst, err := c.instantiate(ref, inp, t)
	if err != nil {
		return nil, fmt.Errorf("reference %s: %w", ref.Name(), err)
	}
	defer inst.Free()
	if err := inst.Run(); err != nil {
		return nil, fmt.Errorf("reference %s: the op failed: %w", ref.Name(), err)
	}
	if err := ref.Sync(); err != nil {
		return nil, fmt.Errorf("reference %s: Sync: %w", ref.Name(), err)
	}
	outs, err := inst.outputs()
	if err != nil {
		return nil, fmt.Errorf("reference %s: %w", ref.Name(), err)
	}
	return outs, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
