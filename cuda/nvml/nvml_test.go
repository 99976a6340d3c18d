package nvml_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/rs/zerolog"

	"github.com/mdm-gpu/mdm-gpu/cuda/nvml"
)

// h200 returns go-nvml's DGX H200 mock (8 × H200 141 GB) with the functions it leaves nil
// filled in: utilisation, power, power limit, energy, temperature, clocks, clock event
// reasons (new and old names), PCIe throughput, NVLink state and field values. Power is
// 400 + 10·i W and the energy counters advance as if that power were drawn; NVLink data
// counters advance by 1 GiB (in KiB) per read. missing, if non-empty, is a symbol the
// "driver" lacks (LookupSymbol fails for it).
func h200(t *testing.T, missing string) (*server.Server, *atomic.Int64) {
	t.Helper()
	s := dgxh200.New()
	calls := &atomic.Int64{}
	s.LookupSymbolFunc = func(sym string) error {
		if sym == missing {
			return fmt.Errorf("%s: undefined symbol", sym)
		}
		return nil
	}
	start := time.Now()
	for _, dv := range s.Devices {
		d := dv.(*server.Device)
		i := d.Index
		var nvReads atomic.Int64
		d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
			calls.Add(1)
			return gonvml.Utilization{Gpu: uint32(90 + i), Memory: uint32(40 + i)}, gonvml.SUCCESS
		}
		d.GetPowerUsageFunc = func() (uint32, gonvml.Return) { calls.Add(1); return uint32(400_000 + 10_000*i), gonvml.SUCCESS }
		d.GetEnforcedPowerLimitFunc = func() (uint32, gonvml.Return) { calls.Add(1); return 700_000, gonvml.SUCCESS }
		d.GetTotalEnergyConsumptionFunc = func() (uint64, gonvml.Return) {
			calls.Add(1)
			mj := float64(400+10*i) * float64(time.Since(start).Milliseconds()) // W · ms = mJ
			return uint64(1e9 + mj), gonvml.SUCCESS
		}
		d.GetTemperatureFunc = func(gonvml.TemperatureSensors) (uint32, gonvml.Return) {
			calls.Add(1)
			return uint32(50 + i), gonvml.SUCCESS
		}
		d.GetClockInfoFunc = func(c gonvml.ClockType) (uint32, gonvml.Return) {
			calls.Add(1)
			if c == gonvml.CLOCK_SM {
				return 1980, gonvml.SUCCESS
			}
			return 3201, gonvml.SUCCESS
		}
		d.GetCurrentClocksEventReasonsFunc = func() (uint64, gonvml.Return) {
			calls.Add(1)
			return gonvml.ClocksEventReasonSwPowerCap, gonvml.SUCCESS
		}
		d.GetCurrentClocksThrottleReasonsFunc = func() (uint64, gonvml.Return) {
			calls.Add(1)
			return gonvml.ClocksThrottleReasonHwThermalSlowdown, gonvml.SUCCESS
		}
		if missing == "nvmlDeviceGetCurrentClocksEventReasons" {
			d.GetCurrentClocksEventReasonsFunc = nil // calling it would panic
		}
		d.GetPcieThroughputFunc = func(c gonvml.PcieUtilCounter) (uint32, gonvml.Return) {
			calls.Add(1)
			if c == gonvml.PCIE_UTIL_TX_BYTES {
				return 1000, gonvml.SUCCESS
			}
			return 2000, gonvml.SUCCESS
		}
		d.GetNvLinkStateFunc = func(link int) (gonvml.EnableState, gonvml.Return) {
			calls.Add(1)
			if link >= 18 {
				return 0, gonvml.ERROR_INVALID_ARGUMENT
			}
			return gonvml.FEATURE_ENABLED, gonvml.SUCCESS
		}
		d.GetFieldValuesFunc = func(vals []gonvml.FieldValue) gonvml.Return {
			calls.Add(1)
			n := nvReads.Add(1)
			for k := range vals {
				vals[k].NvmlReturn = uint32(gonvml.SUCCESS)
				vals[k].ValueType = uint32(gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
				kib := uint64(n) * (1 << 20) / 18 // 1 GiB per read over 18 links
				if vals[k].FieldId == gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX {
					kib *= 2
				}
				binary.LittleEndian.PutUint64(vals[k].Value[:], kib)
			}
			return gonvml.SUCCESS
		}
	}
	return s, calls
}

func testLogger(buf io.Writer) *zerolog.Logger {
	l := zerolog.New(buf).Level(zerolog.InfoLevel)
	return &l
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMockH200: with the H200 mock every field is sampled and appears in the snapshot,
// the progress-bar text, the log fields, /metrics and the summary (energy per token).
func TestMockH200(t *testing.T) {
	lib, _ := h200(t, "")
	var logs syncBuffer
	m := nvml.Start(nvml.Config{Interval: 10 * time.Millisecond, Library: lib, Devices: []int{0, 1}, Logger: testLogger(&logs)})
	if !m.Enabled() {
		t.Fatalf("monitor disabled with the mock: %s", logs.String())
	}
	time.Sleep(80 * time.Millisecond)
	m.SampleNow()
	lat := m.Latest()
	if len(lat) != 2 {
		t.Fatalf("%d samples, want 2", len(lat))
	}
	s := lat[1]
	all := nvml.FUtil | nvml.FMemory | nvml.FPower | nvml.FPowerLimit | nvml.FEnergy | nvml.FTemp | nvml.FSMClock |
		nvml.FMemClock | nvml.FThrottle | nvml.FPCIe | nvml.FNVLink
	if s.Have != all {
		t.Errorf("fields %b, want %b", s.Have, all)
	}
	if s.Name != "NVIDIA H200 141GB HBM3e" || s.UtilGPU != 91 || s.PowerW != 410 || s.TempC != 51 || s.SMClockMHz != 1980 ||
		s.MemClockMHz != 3201 || s.MemTotal != 151397597184 || s.PCIeTxBps != 1000*1024 || s.PowerLimitW != 700 {
		t.Errorf("sample %+v", s)
	}
	if r := s.ThrottleReasons(); len(r) != 1 || r[0] != "sw_power_cap" {
		t.Errorf("throttle reasons %v (the newer event-reasons call should be used)", r)
	}
	if !(s.NVLinkTxBps > 0 && math.Abs(s.NVLinkRxBps/s.NVLinkTxBps-2) < 0.01) {
		t.Errorf("NVLink rates tx %v rx %v", s.NVLinkTxBps, s.NVLinkRxBps)
	}
	if b := m.Brief(); b != "2 GPUs 90% 0/282GiB 810W 51°C" {
		t.Errorf("Brief() = %q", b)
	}

	// zerolog fields.
	var line bytes.Buffer
	l := zerolog.New(&line)
	m.Fields(l.Info()).Msg("step")
	var rec map[string]any
	if err := json.Unmarshal(line.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"gpu_util_pct", "gpu_mem_used_bytes", "gpu_mem_total_bytes", "gpu_power_w", "gpu_temp_c", "gpus"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("log line lacks %q: %s", k, line.String())
		}
	}
	gpus := rec["gpus"].([]any)
	g1 := gpus[1].(map[string]any)
	for _, k := range []string{"util_pct", "mem_used_bytes", "power_w", "energy_j", "temp_c", "sm_clock_mhz", "mem_clock_mhz", "throttle", "pcie_tx_bytes_per_s", "nvlink_rx_bytes_per_s"} {
		if _, ok := g1[k]; !ok {
			t.Errorf("per-GPU log fields lack %q: %v", k, g1)
		}
	}

	// Prometheus.
	ms, err := nvml.ServeMetrics("127.0.0.1:0", m)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	resp, err := http.Get("http://" + ms.Addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mdm_gpu_utilization_ratio{gpu="1",name="NVIDIA H200 141GB HBM3e",uuid=`,
		`mdm_gpu_power_watts{gpu="0"`, `mdm_gpu_temperature_celsius{gpu="1"`, `mdm_gpu_memory_total_bytes{gpu="0"`,
		`mdm_gpu_energy_joules_total{gpu="0"`, `mdm_gpu_sm_clock_hertz{gpu="0"`, `mdm_gpu_pcie_rx_bytes_per_second{gpu="1"`,
		`mdm_gpu_nvlink_tx_bytes_per_second{gpu="0"`, `mdm_gpu_throttled{gpu="0",name="NVIDIA H200 141GB HBM3e",reason="sw_power_cap"`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(string(body), "mdm_gpu_power_watts{gpu=\"1\",name=\"NVIDIA H200 141GB HBM3e\",uuid=") ||
		!strings.Contains(string(body), "} 410\n") {
		t.Errorf("power of GPU 1 not exported as 410 W")
	}

	// Summary with energy per token.
	time.Sleep(30 * time.Millisecond)
	m.Stop()
	sum := m.Summary(1_000_000)
	if sum.GPUs != 2 || sum.Samples < 3 || sum.MeanUtilPct != 90.5 || sum.MaxUtilPct != 91 || sum.MeanPowerW != 810 || sum.MaxPowerW != 810 {
		t.Errorf("summary %+v", sum)
	}
	// The mock's energy counters advance at the drawn power (810 W in all).
	wantJ := 810 * sum.Duration.Seconds()
	if sum.EnergySource != "counter" || math.Abs(sum.EnergyJ-wantJ) > 0.1*wantJ+2 {
		t.Errorf("energy %.3f J (%s), want ≈ %.3f J over %v", sum.EnergyJ, sum.EnergySource, wantJ, sum.Duration)
	}
	if math.Abs(sum.EnergyPerTokenJ-sum.EnergyJ/1e6) > 1e-12 {
		t.Errorf("energy per token %v", sum.EnergyPerTokenJ)
	}
	t.Log(sum.String())
	if strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("warnings with a working NVML: %s", logs.String())
	}
}

// TestMockMissingNewerSymbol: a driver without nvmlDeviceGetCurrentClocksEventReasons
// (older than R535): the monitor probes the symbol, never calls it (the mock would panic),
// and reads the throttle reasons through the older name.
func TestMockMissingNewerSymbol(t *testing.T) {
	lib, _ := h200(t, "nvmlDeviceGetCurrentClocksEventReasons")
	var logs syncBuffer
	m := nvml.Start(nvml.Config{Interval: time.Hour, Library: lib, Devices: []int{3}, Logger: testLogger(&logs)})
	defer m.Stop()
	m.SampleNow()
	if !m.Enabled() {
		t.Fatalf("monitor disabled: %s", logs.String())
	}
	s := m.Latest()[0]
	if r := s.ThrottleReasons(); len(r) != 1 || r[0] != "hw_thermal" {
		t.Errorf("throttle reasons %v, want [hw_thermal] from the older call", r)
	}
	// Without the energy counter the summary integrates power instead.
	lib2, _ := h200(t, "nvmlDeviceGetTotalEnergyConsumption")
	m2 := nvml.Start(nvml.Config{Interval: 10 * time.Millisecond, Library: lib2, Devices: []int{0}, Logger: testLogger(&logs)})
	time.Sleep(60 * time.Millisecond)
	m2.Stop()
	sum := m2.Summary(100)
	if sum.EnergySource != "power" || math.Abs(sum.EnergyJ-400*sum.Duration.Seconds()) > 1e-6 {
		t.Errorf("integrated energy: %+v", sum)
	}
}

// TestNVMLFailingInit: an NVML whose Init fails (the mock returning
// ERROR_DRIVER_NOT_LOADED) gives exactly one warning and a monitor that never calls NVML
// again, whatever is asked of it.
func TestNVMLFailingInit(t *testing.T) {
	lib, calls := h200(t, "")
	var inits atomic.Int64
	lib.InitFunc = func() gonvml.Return { inits.Add(1); return gonvml.ERROR_DRIVER_NOT_LOADED }
	lib.DeviceGetCountFunc = func() (int, gonvml.Return) { calls.Add(1); return 8, gonvml.SUCCESS }
	var logs syncBuffer
	m := nvml.Start(nvml.Config{Interval: 5 * time.Millisecond, Library: lib, Logger: testLogger(&logs)})
	exercise(t, m)
	if inits.Load() != 1 || calls.Load() != 0 {
		t.Errorf("NVML called after a failed Init: %d inits, %d other calls", inits.Load(), calls.Load())
	}
	checkOneWarning(t, logs.String(), "NVML error 9")
}

// exercise calls everything a training run would call on a disabled monitor.
func exercise(t *testing.T, m *nvml.Monitor) {
	t.Helper()
	if m.Enabled() {
		t.Fatal("monitor enabled")
	}
	time.Sleep(30 * time.Millisecond)
	m.SampleNow()
	if m.Latest() != nil || m.Brief() != "" || m.Snapshot().GPUs != 0 {
		t.Errorf("disabled monitor reports data: %v %q", m.Latest(), m.Brief())
	}
	var line bytes.Buffer
	l := zerolog.New(&line)
	m.Fields(l.Info()).Msg("step")
	if strings.Contains(line.String(), "gpu") {
		t.Errorf("disabled monitor adds log fields: %s", line.String())
	}
	ms, err := nvml.ServeMetrics("127.0.0.1:0", m)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + ms.Addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ms.Close()
	if strings.Contains(string(body), "mdm_gpu_") || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("/metrics of a disabled monitor: GPU series present or Go series missing")
	}
	if s := m.Summary(1000); s.GPUs != 0 || s.String() != "GPU telemetry: not available" {
		t.Errorf("summary of a disabled monitor: %+v", s)
	}
	m.Stop()
	m.Stop()
}

func checkOneWarning(t *testing.T, logs, want string) {
	t.Helper()
	n := strings.Count(logs, `"level":"warn"`)
	if n != 1 || !strings.Contains(logs, want) || !strings.Contains(logs, "training continues") {
		t.Errorf("want exactly one warning mentioning %q, got %d: %s", want, n, logs)
	}
}

// TestNVMLAbsent: the real go-nvml against a library path that does not exist (and, on
// this machine, the system library without a kernel driver): one warning, no-op monitor.
func TestNVMLAbsent(t *testing.T) {
	var logs syncBuffer
	m := nvml.Start(nvml.Config{Library: gonvml.New(gonvml.WithLibraryPath("/nonexistent/libnvidia-ml.so.1")), Logger: testLogger(&logs)})
	exercise(t, m)
	checkOneWarning(t, logs.String(), "NVML error 12")

	var logs2 syncBuffer
	m2 := nvml.Start(nvml.Config{Logger: testLogger(&logs2)})
	if m2.Enabled() {
		t.Logf("the system NVML works here (%s): skipping the no-driver check", m2.Brief())
		m2.Stop()
		return
	}
	exercise(t, m2)
	checkOneWarning(t, logs2.String(), "NVML")
	t.Logf("system NVML: %s", strings.TrimSpace(logs2.String()))
}

// TestMockDeviceOutOfRange: asking for a GPU NVML does not see disables telemetry with
// one warning naming it.
func TestMockDeviceOutOfRange(t *testing.T) {
	lib, _ := h200(t, "")
	var logs syncBuffer
	m := nvml.Start(nvml.Config{Library: lib, Devices: []int{8}, Logger: testLogger(&logs)})
	if m.Enabled() {
		t.Fatal("enabled with GPU 8 of 8")
	}
	checkOneWarning(t, logs.String(), "GPU 8 does not exist (NVML sees 8)")
}
