package sched_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mdm-gpu/mdm-gpu/cuda/sched"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestLaunchEnv(t *testing.T) {
	cases := []struct {
		env  func(string) string
		want sched.LaunchEnv
		err  string
	}{
		{env: envOf(), want: sched.LaunchEnv{WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: 29500, Source: "single"}},
		{env: envOf("RANK", "3", "WORLD_SIZE", "8", "LOCAL_RANK", "3", "LOCAL_WORLD_SIZE", "4", "MASTER_ADDR", "node1", "MASTER_PORT", "1234"),
			want: sched.LaunchEnv{Rank: 3, WorldSize: 8, LocalRank: 3, LocalSize: 4, MasterAddr: "node1", MasterPort: 1234, Source: "torchrun"}},
		{env: envOf("SLURM_PROCID", "5", "SLURM_NTASKS", "16", "SLURM_LOCALID", "1", "SLURM_NTASKS_PER_NODE", "8(x2)", "SLURM_JOB_NODELIST", "gpu[007-008,010],login1"),
			want: sched.LaunchEnv{Rank: 5, WorldSize: 16, LocalRank: 1, LocalSize: 8, MasterAddr: "gpu007", MasterPort: 29500, Source: "slurm"}},
		{env: envOf("SLURM_PROCID", "0", "SLURM_NTASKS", "2", "SLURM_NODELIST", "a1,a2", "MASTER_PORT", "40000"),
			want: sched.LaunchEnv{Rank: 0, WorldSize: 2, MasterAddr: "a1", MasterPort: 40000, Source: "slurm"}},
		{env: envOf("RANK", "4", "WORLD_SIZE", "4"), err: "rank 4 is outside the world of 4"},
		{env: envOf("RANK", "x", "WORLD_SIZE", "4"), err: `RANK="x"`},
		{env: envOf("RANK", "0"), err: "must be set together"},
		{env: envOf("RANK", "0", "WORLD_SIZE", "2", "MASTER_PORT", "70000"), err: "MASTER_PORT=70000"},
		{env: envOf("SLURM_PROCID", "0", "SLURM_NTASKS", "2"), err: "export MASTER_ADDR"},
	}
	for i, c := range cases {
		got, err := sched.LaunchEnvFrom(c.env)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("case %d: %v, want an error containing %q", i, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("case %d: %+v, %v; want %+v", i, got, err, c.want)
		}
	}
}

func TestFirstHost(t *testing.T) {
	for in, want := range map[string]string{
		"node1":                  "node1",
		"gpu[003-006,010],login": "gpu003",
		"rack[1-2]-n[07-08]":     "rack1-n07",
		"a[5],b[1-3]":            "a5",
		" x-[9,11] ":             "x-9",
	} {
		if got, err := sched.FirstHost(in); err != nil || got != want {
			t.Errorf("FirstHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"gpu[1-2", "", "a[]"} {
		if _, err := sched.FirstHost(bad); err == nil {
			t.Errorf("FirstHost(%q) succeeded", bad)
		}
	}
}

func TestParseDevices(t *testing.T) {
	for spec, want := range map[string][]int{"": {0, 1, 2, 3}, "all": {0, 1, 2, 3}, "0,2": {0, 2}, "1-3": {1, 2, 3}, "n:2": {0, 1}, "3, 0": {3, 0}} {
		got, err := sched.ParseDevices(spec, 4)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseDevices(%q, 4) = %v, %v; want %v", spec, got, err, want)
		}
	}
	for spec, msg := range map[string]string{"7": "device 7 does not exist; this machine has 4 device(s), indices 0–3", "1,1": "twice", "a": "not an index", "n:5": "1 ≤ K ≤ 4", "3-1": "not an index"} {
		if _, err := sched.ParseDevices(spec, 4); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseDevices(%q, 4): %v, want %q", spec, err, msg)
		}
	}
	if _, err := sched.ParseDevices("all", 0); err == nil {
		t.Error("no devices accepted")
	}
}

// TestTreeSumComposes: the property the scheduler's bit-exactness rests on — the tree
// over D·A values equals the tree over D per-rank trees of A consecutive values, for A a
// power of two and any D.
func TestTreeSumComposes(t *testing.T) {
	for _, da := range [][2]int{{1, 4}, {2, 2}, {4, 1}, {3, 2}, {5, 4}, {6, 1}, {7, 8}} {
		D, A := da[0], da[1]
		n := 257
		vals := make([][]float32, D*A)
		for j := range vals {
			vals[j] = input(j, n)
		}
		all := make([]float32, n)
		sched.TreeSum(all, vals)
		per := make([][]float32, D)
		for r := range per {
			per[r] = make([]float32, n)
			sched.TreeSum(per[r], vals[r*A:(r+1)*A])
		}
		two := make([]float32, n)
		sched.TreeSum(two, per)
		for i := range all {
			if all[i] != two[i] {
				t.Errorf("D=%d A=%d: element %d: %v vs %v", D, A, i, all[i], two[i])
				break
			}
		}
	}
}

// TestConfigFingerprint: identical configurations give identical fingerprints (no
// addresses or map order in them), and a change is named.
func TestConfigFingerprint(t *testing.T) {
	a, b := tinyConfig(2).Fingerprint(4), tinyConfig(2).Fingerprint(4)
	if a != b {
		t.Fatalf("fingerprints of equal configs differ:\n%s\n%s", a, b)
	}
	c := tinyConfig(2)
	c.Optim.LR *= 2
	if d := sched.DiffFingerprints(a, c.Fingerprint(4)); !strings.Contains(d, "optim:") {
		t.Errorf("LR change described as %q", d)
	}
	if d := sched.DiffFingerprints(a, tinyConfig(4).Fingerprint(4)); !strings.Contains(d, `accum: rank 0 has "2", the peer has "4"`) {
		t.Errorf("accum change described as %q", d)
	}
	if strings.Contains(a, "0x") {
		t.Errorf("fingerprint contains an address: %s", a)
	}
}
