// Package nvml samples GPU telemetry through NVML (github.com/NVIDIA/go-nvml) in the
// background for the progress bar, the logs, an optional Prometheus /metrics endpoint and
// an end-of-run summary (architecture.md §8).
//
// NVML is optional. Start gates everything on Init (go-cuda-notes.md §3.1, pitfalls
// B18): if the library is missing, the driver is not loaded or Init fails for any other
// reason, Start logs exactly one warning and returns a monitor that does nothing and never
// calls NVML again; training goes on. Functions newer than the oldest supported driver are
// probed with LookupSymbol before they are called, and a field a device does not support
// is dropped for that device after its first failure.
package nvml

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
)

// Config configures a Monitor.
type Config struct {
	// Interval is the sampling period (default 1 s; at least 10 ms).
	Interval time.Duration
	// Devices lists the NVML indices to watch (nil: every device). Under CUDA_VISIBLE_DEVICES
	// NVML still sees every GPU, so pass the GPUs the job uses.
	Devices []int
	// Library is the NVML implementation (nil: the system library, loaded at Init). Tests
	// pass go-nvml's mocks.
	Library gonvml.Interface
	// Logger receives the one warning when NVML is unavailable and debug notes about
	// unsupported fields (nil: zerolog's global logger).
	Logger *zerolog.Logger
}

// Field is a bit set of the measurements a Sample holds.
type Field uint32

// Measurements.
const (
	FUtil Field = 1 << iota
	FMemory
	FPower
	FPowerLimit
	FEnergy
	FTemp
	FSMClock
	FMemClock
	FThrottle
	FPCIe
	FNVLink
)

// Sample is one device's measurements at one time. Have says which fields are valid.
type Sample struct {
	Index      int
	Name, UUID string
	Time       time.Time
	Have       Field

	UtilGPU, UtilMem     uint32  // percent of the sample period a kernel / memory copy ran
	MemUsed, MemTotal    uint64  // bytes
	PowerW, PowerLimitW  float64 // watts
	EnergyJ              float64 // joules since the driver loaded (a counter)
	TempC                uint32
	SMClockMHz           uint32
	MemClockMHz          uint32
	Throttle             uint64  // clock event (throttle) reason bits
	PCIeTxBps, PCIeRxBps float64 // bytes/s (NVML's 20 ms PCIe window)
	NVLinkTxBps          float64 // bytes/s over all active links, from the counters' change
	NVLinkRxBps          float64
}

// Has reports whether f is valid in s.
func (s Sample) Has(f Field) bool { return s.Have&f != 0 }

// ThrottleReasons names the set bits of s.Throttle, e.g. ["sw_power_cap", "hw_thermal"].
func (s Sample) ThrottleReasons() []string { return throttleNames(s.Throttle) }

var throttleBits = []struct {
	bit  uint64
	name string
}{
	{gonvml.ClocksEventReasonGpuIdle, "gpu_idle"},
	{gonvml.ClocksEventReasonApplicationsClocksSetting, "applications_clocks"},
	{gonvml.ClocksEventReasonSwPowerCap, "sw_power_cap"},
	{gonvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{gonvml.ClocksEventReasonSyncBoost, "sync_boost"},
	{gonvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal"},
	{gonvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal"},
	{gonvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake"},
	{gonvml.ClocksEventReasonDisplayClockSetting, "display_clocks"},
}

func throttleNames(bits uint64) []string {
	var out []string
	for _, b := range throttleBits {
		if bits&b.bit != 0 {
			out = append(out, b.name)
		}
	}
	return out
}

// Symbols newer than some supported drivers, probed before use.
const (
	symEventReasons    = "nvmlDeviceGetCurrentClocksEventReasons"
	symThrottleReasons = "nvmlDeviceGetCurrentClocksThrottleReasons"
	symEnergy          = "nvmlDeviceGetTotalEnergyConsumption"
	symFieldValues     = "nvmlDeviceGetFieldValues"
)

// device is one watched GPU and what it supports.
type device struct {
	index      int
	h          gonvml.Device
	name, uuid string
	off        Field // fields that failed once (not supported): not asked again
	links      []int // active NVLink links
	// NVLink counter state for rates.
	lastNVTx, lastNVRx float64
	lastNVTime         time.Time
	haveNV             bool
	acc                devAcc
}

// devAcc accumulates a device's samples for the summary.
type devAcc struct {
	n                   int
	utilN               int
	utilSum, utilMax    float64
	powerSum, powerMax  float64
	powerN              int
	energyFirst, energy float64 // counter at the first and last sample
	energyN             int
	integral            float64 // ∫ power dt in joules (trapezoid), the fallback
	lastPower           float64
	lastPowerTime       time.Time
	tempMax             uint32
	memMax              uint64
}

// Monitor samples NVML in the background. A disabled monitor (NVML unavailable) answers
// every method with empty values and never calls NVML.
type Monitor struct {
	enabled  atomic.Bool
	lib      gonvml.Interface
	log      zerolog.Logger
	interval time.Duration

	// probed symbols
	eventReasons, throttleReasons, energy, fieldValues bool

	mu       sync.Mutex
	devs     []*device
	latest   []Sample
	start    time.Time
	last     time.Time
	ticks    int
	totMax   float64 // largest summed power of one tick
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
	closed   bool
}

// Start initialises NVML and begins sampling every cfg.Interval. It never fails: when
// NVML cannot be used it logs one warning and returns a disabled monitor.
func Start(cfg Config) *Monitor {
	m := &Monitor{interval: cfg.Interval, lib: cfg.Library}
	if cfg.Logger != nil {
		m.log = *cfg.Logger
	} else {
		m.log = log.Logger
	}
	if m.interval <= 0 {
		m.interval = time.Second
	}
	m.interval = max(m.interval, 10*time.Millisecond)
	if m.lib == nil {
		m.lib = gonvml.New()
	}
	if err := m.init(cfg.Devices); err != nil {
		m.log.Warn().Err(err).Msg("GPU telemetry disabled (NVML unavailable); training continues without utilisation, memory, power and temperature readings")
		m.lib = nil // never call NVML again
		return m
	}
	m.enabled.Store(true)
	m.stop, m.stopped = make(chan struct{}), make(chan struct{})
	m.sample()
	go m.loop()
	return m
}

// initError carries an NVML Return; its message never calls into NVML when the library
// did not load (go-nvml's Return.Error has a built-in table for that case).
func nvErr(what string, r gonvml.Return) error {
	return fmt.Errorf("%s: %v (NVML error %d)", what, r.Error(), int(r))
}

func (m *Monitor) init(want []int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("NVML initialisation panicked: %v", r)
		}
	}()
	if r := m.lib.Init(); r != gonvml.SUCCESS {
		return nvErr("nvmlInit", r)
	}
	ok := false
	defer func() {
		if !ok {
			m.lib.Shutdown()
		}
	}()
	n, r := m.lib.DeviceGetCount()
	if r != gonvml.SUCCESS {
		return nvErr("nvmlDeviceGetCount", r)
	}
	if n == 0 {
		return fmt.Errorf("NVML sees no GPU")
	}
	if want == nil {
		for i := 0; i < n; i++ {
			want = append(want, i)
		}
	}
	ext := m.lib.Extensions()
	has := func(sym string) bool { return ext.LookupSymbol(sym) == nil }
	m.eventReasons, m.throttleReasons = has(symEventReasons), has(symThrottleReasons)
	m.energy, m.fieldValues = has(symEnergy), has(symFieldValues)
	for _, i := range want {
		if i < 0 || i >= n {
			return fmt.Errorf("GPU %d does not exist (NVML sees %d)", i, n)
		}
		h, r := m.lib.DeviceGetHandleByIndex(i)
		if r != gonvml.SUCCESS {
			return nvErr(fmt.Sprintf("nvmlDeviceGetHandleByIndex(%d)", i), r)
		}
		d := &device{index: i, h: h}
		if s, r := h.GetName(); r == gonvml.SUCCESS {
			d.name = s
		}
		if s, r := h.GetUUID(); r == gonvml.SUCCESS {
			d.uuid = s
		}
		if !m.energy {
			d.off |= FEnergy
		}
		if !m.eventReasons && !m.throttleReasons {
			d.off |= FThrottle
		}
		if m.fieldValues {
			for l := 0; l < gonvml.NVLINK_MAX_LINKS; l++ {
				st, r := h.GetNvLinkState(l)
				if r != gonvml.SUCCESS {
					break // past the last link, or NVLink not supported
				}
				if st == gonvml.FEATURE_ENABLED {
					d.links = append(d.links, l)
				}
			}
		}
		if len(d.links) == 0 {
			d.off |= FNVLink
		}
		m.devs = append(m.devs, d)
	}
	ok = true
	return nil
}

func (m *Monitor) loop() {
	defer close(m.stopped)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sample()
		}
	}
}

// Enabled reports whether NVML is in use.
func (m *Monitor) Enabled() bool { return m != nil && m.enabled.Load() }

// SampleNow takes a sample immediately (besides the periodic ones).
func (m *Monitor) SampleNow() {
	if m.Enabled() {
		m.mu.Lock()
		closed := m.closed
		m.mu.Unlock()
		if !closed {
			m.sample()
		}
	}
}

// Stop takes a last sample (so that short runs still get an energy reading), ends the
// background sampling and shuts NVML down. The latest samples and the summary stay
// available. It may be called more than once.
func (m *Monitor) Stop() {
	if m == nil || m.stop == nil {
		return
	}
	m.stopOnce.Do(func() {
		close(m.stop)
		<-m.stopped
		m.sample()
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		func() {
			defer func() { recover() }()
			m.lib.Shutdown()
		}()
	})
}

// sample reads every device once. A panic inside NVML bindings (a mock with a missing
// function, a binding bug) disables the monitor with one warning instead of killing the
// run.
func (m *Monitor) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.enabled.Load() {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			m.log.Warn().Msgf("GPU telemetry disabled after an NVML failure: %v", r)
			m.enabled.Store(false)
			m.closed = true
		}
	}()
	now := time.Now()
	out := make([]Sample, len(m.devs))
	total := 0.0
	for i, d := range m.devs {
		out[i] = m.read(d, now)
		if out[i].Has(FPower) {
			total += out[i].PowerW
		}
		d.acc.add(out[i])
	}
	m.latest = out
	if m.ticks == 0 {
		m.start = now
	}
	m.last = now
	m.ticks++
	m.totMax = math.Max(m.totMax, total)
}

// ok records a failed call: the field is not asked again on this device.
func (m *Monitor) ok(d *device, f Field, r gonvml.Return) bool {
	if r == gonvml.SUCCESS {
		return true
	}
	d.off |= f
	m.log.Debug().Int("gpu", d.index).Str("error", r.Error()).Msgf("NVML: field %s not available; not asked again", fieldName(f))
	return false
}

func (m *Monitor) read(d *device, now time.Time) Sample {
	s := Sample{Index: d.index, Name: d.name, UUID: d.uuid, Time: now}
	h := d.h
	want := func(f Field) bool { return d.off&f == 0 }
	if want(FUtil) {
		if u, r := h.GetUtilizationRates(); m.ok(d, FUtil, r) {
			s.UtilGPU, s.UtilMem, s.Have = u.Gpu, u.Memory, s.Have|FUtil
		}
	}
	if want(FMemory) {
		if mi, r := h.GetMemoryInfo(); m.ok(d, FMemory, r) {
			s.MemUsed, s.MemTotal, s.Have = mi.Used, mi.Total, s.Have|FMemory
		}
	}
	if want(FPower) {
		if p, r := h.GetPowerUsage(); m.ok(d, FPower, r) {
			s.PowerW, s.Have = float64(p)/1000, s.Have|FPower
		}
	}
	if want(FPowerLimit) {
		if p, r := h.GetEnforcedPowerLimit(); m.ok(d, FPowerLimit, r) {
			s.PowerLimitW, s.Have = float64(p)/1000, s.Have|FPowerLimit
		}
	}
	if want(FEnergy) {
		if e, r := h.GetTotalEnergyConsumption(); m.ok(d, FEnergy, r) {
			s.EnergyJ, s.Have = float64(e)/1000, s.Have|FEnergy
		}
	}
	if want(FTemp) {
		if t, r := h.GetTemperature(gonvml.TEMPERATURE_GPU); m.ok(d, FTemp, r) {
			s.TempC, s.Have = t, s.Have|FTemp
		}
	}
	if want(FSMClock) {
		if c, r := h.GetClockInfo(gonvml.CLOCK_SM); m.ok(d, FSMClock, r) {
			s.SMClockMHz, s.Have = c, s.Have|FSMClock
		}
	}
	if want(FMemClock) {
		if c, r := h.GetClockInfo(gonvml.CLOCK_MEM); m.ok(d, FMemClock, r) {
			s.MemClockMHz, s.Have = c, s.Have|FMemClock
		}
	}
	if want(FThrottle) {
		var bits uint64
		var r gonvml.Return
		if m.eventReasons {
			bits, r = h.GetCurrentClocksEventReasons()
		} else {
			bits, r = h.GetCurrentClocksThrottleReasons()
		}
		if m.ok(d, FThrottle, r) {
			s.Throttle, s.Have = bits, s.Have|FThrottle
		}
	}
	if want(FPCIe) {
		tx, r1 := h.GetPcieThroughput(gonvml.PCIE_UTIL_TX_BYTES)
		rx, r2 := h.GetPcieThroughput(gonvml.PCIE_UTIL_RX_BYTES)
		if m.ok(d, FPCIe, r1) && m.ok(d, FPCIe, r2) {
			s.PCIeTxBps, s.PCIeRxBps, s.Have = float64(tx)*1024, float64(rx)*1024, s.Have|FPCIe
		}
	}
	if want(FNVLink) {
		m.readNVLink(d, &s, now)
	}
	return s
}

// readNVLink reads the per-link NVLink data counters (KiB) with one GetFieldValues call
// and turns their change since the previous sample into bytes/s.
func (m *Monitor) readNVLink(d *device, s *Sample, now time.Time) {
	vals := make([]gonvml.FieldValue, 0, 2*len(d.links))
	for _, l := range d.links {
		vals = append(vals,
			gonvml.FieldValue{FieldId: gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ScopeId: uint32(l)},
			gonvml.FieldValue{FieldId: gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ScopeId: uint32(l)})
	}
	if r := d.h.GetFieldValues(vals); !m.ok(d, FNVLink, r) {
		return
	}
	var tx, rx float64
	for _, v := range vals {
		if gonvml.Return(v.NvmlReturn) != gonvml.SUCCESS {
			m.ok(d, FNVLink, gonvml.Return(v.NvmlReturn))
			return
		}
		x := fieldFloat(v)
		if v.FieldId == gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX {
			tx += x
		} else {
			rx += x
		}
	}
	if d.haveNV {
		if dt := now.Sub(d.lastNVTime).Seconds(); dt > 0 {
			s.NVLinkTxBps = math.Max(0, tx-d.lastNVTx) * 1024 / dt
			s.NVLinkRxBps = math.Max(0, rx-d.lastNVRx) * 1024 / dt
			s.Have |= FNVLink
		}
	}
	d.lastNVTx, d.lastNVRx, d.lastNVTime, d.haveNV = tx, rx, now, true
}

// fieldFloat decodes a field value by its type.
func fieldFloat(v gonvml.FieldValue) float64 {
	b := v.Value[:]
	switch gonvml.ValueType(v.ValueType) {
	case gonvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	case gonvml.VALUE_TYPE_UNSIGNED_INT:
		return float64(binary.LittleEndian.Uint32(b))
	case gonvml.VALUE_TYPE_UNSIGNED_LONG, gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(binary.LittleEndian.Uint64(b))
	case gonvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(binary.LittleEndian.Uint64(b)))
	case gonvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case gonvml.VALUE_TYPE_UNSIGNED_SHORT:
		return float64(binary.LittleEndian.Uint16(b))
	}
	return 0
}

func fieldName(f Field) string {
	names := map[Field]string{FUtil: "utilization", FMemory: "memory", FPower: "power", FPowerLimit: "power_limit",
		FEnergy: "energy", FTemp: "temperature", FSMClock: "sm_clock", FMemClock: "mem_clock", FThrottle: "throttle_reasons",
		FPCIe: "pcie_throughput", FNVLink: "nvlink_throughput"}
	return names[f]
}

func (a *devAcc) add(s Sample) {
	a.n++
	if s.Has(FUtil) {
		u := float64(s.UtilGPU)
		a.utilN++
		a.utilSum += u
		a.utilMax = math.Max(a.utilMax, u)
	}
	if s.Has(FPower) {
		a.powerSum += s.PowerW
		a.powerMax = math.Max(a.powerMax, s.PowerW)
		if a.powerN > 0 {
			a.integral += (a.lastPower + s.PowerW) / 2 * s.Time.Sub(a.lastPowerTime).Seconds()
		}
		a.powerN++
		a.lastPower, a.lastPowerTime = s.PowerW, s.Time
	}
	if s.Has(FEnergy) {
		if a.energyN == 0 {
			a.energyFirst = s.EnergyJ
		}
		a.energy = s.EnergyJ
		a.energyN++
	}
	if s.Has(FTemp) && s.TempC > a.tempMax {
		a.tempMax = s.TempC
	}
	if s.Has(FMemory) && s.MemUsed > a.memMax {
		a.memMax = s.MemUsed
	}
}

// Latest returns the most recent sample of every watched device (nil when disabled).
func (m *Monitor) Latest() []Sample {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Sample(nil), m.latest...)
}

// Snapshot is the aggregate of the latest samples that the progress bar shows.
type Snapshot struct {
	GPUs              int
	UtilPct           float64 // mean over GPUs
	MemUsed, MemTotal uint64  // bytes, summed
	PowerW            float64 // summed
	TempC             uint32  // hottest GPU
	Have              Field
}

// Snapshot aggregates the latest samples (zero, with GPUs = 0, when disabled).
func (m *Monitor) Snapshot() Snapshot {
	var s Snapshot
	lat := m.Latest()
	s.GPUs = len(lat)
	nu := 0
	for _, x := range lat {
		if x.Has(FUtil) {
			s.UtilPct += float64(x.UtilGPU)
			nu++
			s.Have |= FUtil
		}
		if x.Has(FMemory) {
			s.MemUsed += x.MemUsed
			s.MemTotal += x.MemTotal
			s.Have |= FMemory
		}
		if x.Has(FPower) {
			s.PowerW += x.PowerW
			s.Have |= FPower
		}
		if x.Has(FTemp) {
			s.TempC = max(s.TempC, x.TempC)
			s.Have |= FTemp
		}
	}
	if nu > 0 {
		s.UtilPct /= float64(nu)
	}
	return s
}

// Brief renders the snapshot for a progress bar, e.g. "GPU 97% 61.2/141.0GiB 512W 58°C"
// or "8 GPUs 96% 489/1128GiB 4.10kW 61°C"; "" when disabled.
func (m *Monitor) Brief() string {
	s := m.Snapshot()
	if s.GPUs == 0 {
		return ""
	}
	var parts []string
	if s.GPUs == 1 {
		parts = append(parts, "GPU")
	} else {
		parts = append(parts, fmt.Sprintf("%d GPUs", s.GPUs))
	}
	if s.Have&FUtil != 0 {
		parts = append(parts, fmt.Sprintf("%.0f%%", s.UtilPct))
	}
	if s.Have&FMemory != 0 {
		const gib = 1 << 30
		if s.GPUs == 1 {
			parts = append(parts, fmt.Sprintf("%.1f/%.1fGiB", float64(s.MemUsed)/gib, float64(s.MemTotal)/gib))
		} else {
			parts = append(parts, fmt.Sprintf("%.0f/%.0fGiB", float64(s.MemUsed)/gib, float64(s.MemTotal)/gib))
		}
	}
	if s.Have&FPower != 0 {
		if s.PowerW >= 10000 {
			parts = append(parts, fmt.Sprintf("%.2fkW", s.PowerW/1000))
		} else {
			parts = append(parts, fmt.Sprintf("%.0fW", s.PowerW))
		}
	}
	if s.Have&FTemp != 0 {
		parts = append(parts, fmt.Sprintf("%d°C", s.TempC))
	}
	return strings.Join(parts, " ")
}

// Fields adds the telemetry to a log event: aggregates (gpu_util_pct, gpu_mem_used_bytes,
// gpu_mem_total_bytes, gpu_power_w, gpu_temp_c) and a "gpus" array with every field of
// every device. A disabled monitor adds nothing.
func (m *Monitor) Fields(e *zerolog.Event) *zerolog.Event {
	lat := m.Latest()
	if len(lat) == 0 || e == nil {
		return e
	}
	s := m.Snapshot()
	if s.Have&FUtil != 0 {
		e = e.Float64("gpu_util_pct", s.UtilPct)
	}
	if s.Have&FMemory != 0 {
		e = e.Uint64("gpu_mem_used_bytes", s.MemUsed).Uint64("gpu_mem_total_bytes", s.MemTotal)
	}
	if s.Have&FPower != 0 {
		e = e.Float64("gpu_power_w", s.PowerW)
	}
	if s.Have&FTemp != 0 {
		e = e.Uint32("gpu_temp_c", s.TempC)
	}
	arr := zerolog.Arr()
	for _, x := range lat {
		arr = arr.Dict(sampleDict(x))
	}
	return e.Array("gpus", arr)
}

func sampleDict(x Sample) *zerolog.Event {
	d := zerolog.Dict().Int("index", x.Index).Str("name", x.Name)
	if x.Has(FUtil) {
		d = d.Uint32("util_pct", x.UtilGPU).Uint32("mem_util_pct", x.UtilMem)
	}
	if x.Has(FMemory) {
		d = d.Uint64("mem_used_bytes", x.MemUsed).Uint64("mem_total_bytes", x.MemTotal)
	}
	if x.Has(FPower) {
		d = d.Float64("power_w", x.PowerW)
	}
	if x.Has(FPowerLimit) {
		d = d.Float64("power_limit_w", x.PowerLimitW)
	}
	if x.Has(FEnergy) {
		d = d.Float64("energy_j", x.EnergyJ)
	}
	if x.Has(FTemp) {
		d = d.Uint32("temp_c", x.TempC)
	}
	if x.Has(FSMClock) {
		d = d.Uint32("sm_clock_mhz", x.SMClockMHz)
	}
	if x.Has(FMemClock) {
		d = d.Uint32("mem_clock_mhz", x.MemClockMHz)
	}
	if x.Has(FThrottle) {
		d = d.Strs("throttle", x.ThrottleReasons())
	}
	if x.Has(FPCIe) {
		d = d.Float64("pcie_tx_bytes_per_s", x.PCIeTxBps).Float64("pcie_rx_bytes_per_s", x.PCIeRxBps)
	}
	if x.Has(FNVLink) {
		d = d.Float64("nvlink_tx_bytes_per_s", x.NVLinkTxBps).Float64("nvlink_rx_bytes_per_s", x.NVLinkRxBps)
	}
	return d
}

// Summary is the end-of-run account of the GPUs.
type Summary struct {
	GPUs            int
	Samples         int // sampling ticks
	Duration        time.Duration
	MeanUtilPct     float64 // over GPUs and samples
	MaxUtilPct      float64
	MeanPowerW      float64 // summed over GPUs, averaged over samples
	MaxPowerW       float64 // largest summed power of one sample
	EnergyJ         float64 // over the monitored period, summed over GPUs
	EnergySource    string  // "counter" (NVML's energy counter) or "power" (power integrated over time) or "" (none)
	Tokens          int64
	EnergyPerTokenJ float64 // EnergyJ / Tokens (0 without tokens)
	MaxTempC        uint32
	MaxMemUsed      uint64 // bytes, largest of any GPU
}

// Summary summarises the run so far; tokens (the tokens processed, e.g. steps·B·L) gives
// the energy per token.
func (m *Monitor) Summary(tokens int64) Summary {
	s := Summary{Tokens: tokens}
	if m == nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.devs) == 0 || m.ticks == 0 {
		return s
	}
	s.GPUs, s.Samples, s.Duration = len(m.devs), m.ticks, m.last.Sub(m.start)
	s.MaxPowerW = m.totMax
	nu, counter, integ := 0, 0, 0
	for _, d := range m.devs {
		a := &d.acc
		if a.n == 0 {
			continue
		}
		if a.utilN > 0 {
			s.MeanUtilPct += a.utilSum / float64(a.utilN)
			nu++
		}
		s.MaxUtilPct = math.Max(s.MaxUtilPct, a.utilMax)
		if a.powerN > 0 {
			s.MeanPowerW += a.powerSum / float64(a.powerN)
		}
		switch {
		case a.energyN >= 2:
			s.EnergyJ += a.energy - a.energyFirst
			counter++
		case a.powerN >= 2:
			s.EnergyJ += a.integral
			integ++
		}
		s.MaxTempC = max(s.MaxTempC, a.tempMax)
		s.MaxMemUsed = max(s.MaxMemUsed, a.memMax)
	}
	if nu > 0 {
		s.MeanUtilPct /= float64(nu)
	}
	switch {
	case counter > 0 && integ == 0:
		s.EnergySource = "counter"
	case integ > 0 && counter == 0:
		s.EnergySource = "power"
	case counter > 0:
		s.EnergySource = "counter+power"
	}
	if tokens > 0 && s.EnergySource != "" {
		s.EnergyPerTokenJ = s.EnergyJ / float64(tokens)
	}
	return s
}

// String renders the summary in one line.
func (s Summary) String() string {
	if s.GPUs == 0 {
		return "GPU telemetry: not available"
	}
	d := s.Duration.Round(time.Second)
	if s.Duration < 10*time.Second {
		d = s.Duration.Round(time.Millisecond)
	}
	out := fmt.Sprintf("GPU telemetry over %v (%d GPU(s), %d samples): utilisation mean %.1f%%, max %.0f%%; power mean %.0f W, max %.0f W",
		d, s.GPUs, s.Samples, s.MeanUtilPct, s.MaxUtilPct, s.MeanPowerW, s.MaxPowerW)
	if s.EnergySource != "" {
		out += fmt.Sprintf("; energy %.4g J (%s)", s.EnergyJ, s.EnergySource)
		if s.Tokens > 0 {
			out += fmt.Sprintf(", %.4g J/token (%.4g tokens)", s.EnergyPerTokenJ, float64(s.Tokens))
		}
	}
	out += fmt.Sprintf("; max %d°C, max memory %.1f GiB", s.MaxTempC, float64(s.MaxMemUsed)/(1<<30))
	return out
}

// Event adds the summary's fields to a log event.
func (s Summary) Event(e *zerolog.Event) *zerolog.Event {
	if s.GPUs == 0 {
		return e.Bool("gpu_telemetry", false)
	}
	return e.Int("gpus", s.GPUs).Int("gpu_samples", s.Samples).Dur("gpu_duration", s.Duration).
		Float64("gpu_util_mean_pct", s.MeanUtilPct).Float64("gpu_util_max_pct", s.MaxUtilPct).
		Float64("gpu_power_mean_w", s.MeanPowerW).Float64("gpu_power_max_w", s.MaxPowerW).
		Float64("gpu_energy_j", s.EnergyJ).Str("gpu_energy_source", s.EnergySource).
		Int64("tokens", s.Tokens).Float64("gpu_energy_per_token_j", s.EnergyPerTokenJ).
		Uint32("gpu_temp_max_c", s.MaxTempC).Uint64("gpu_mem_max_bytes", s.MaxMemUsed)
}
