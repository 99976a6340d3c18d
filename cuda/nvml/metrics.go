package nvml

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metric describes one gauge (or counter) per GPU, labelled gpu (index), name and uuid.
type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	field Field
	value func(s Sample) float64
}

func gpuDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, []string{"gpu", "name", "uuid"}, nil)
}

var gpuMetrics = []metric{
	{gpuDesc("mdm_gpu_utilization_ratio", "Fraction of the last sample period during which a kernel ran (NVML utilization.gpu / 100)."),
		prometheus.GaugeValue, FUtil, func(s Sample) float64 { return float64(s.UtilGPU) / 100 }},
	{gpuDesc("mdm_gpu_memory_utilization_ratio", "Fraction of the last sample period during which device memory was read or written."),
		prometheus.GaugeValue, FUtil, func(s Sample) float64 { return float64(s.UtilMem) / 100 }},
	{gpuDesc("mdm_gpu_memory_used_bytes", "Device memory in use."),
		prometheus.GaugeValue, FMemory, func(s Sample) float64 { return float64(s.MemUsed) }},
	{gpuDesc("mdm_gpu_memory_total_bytes", "Device memory size."),
		prometheus.GaugeValue, FMemory, func(s Sample) float64 { return float64(s.MemTotal) }},
	{gpuDesc("mdm_gpu_power_watts", "Board power draw."),
		prometheus.GaugeValue, FPower, func(s Sample) float64 { return s.PowerW }},
	{gpuDesc("mdm_gpu_power_limit_watts", "Enforced power limit."),
		prometheus.GaugeValue, FPowerLimit, func(s Sample) float64 { return s.PowerLimitW }},
	{gpuDesc("mdm_gpu_energy_joules_total", "Energy consumed since the driver loaded."),
		prometheus.CounterValue, FEnergy, func(s Sample) float64 { return s.EnergyJ }},
	{gpuDesc("mdm_gpu_temperature_celsius", "GPU die temperature."),
		prometheus.GaugeValue, FTemp, func(s Sample) float64 { return float64(s.TempC) }},
	{gpuDesc("mdm_gpu_sm_clock_hertz", "Streaming multiprocessor clock."),
		prometheus.GaugeValue, FSMClock, func(s Sample) float64 { return float64(s.SMClockMHz) * 1e6 }},
	{gpuDesc("mdm_gpu_memory_clock_hertz", "Memory clock."),
		prometheus.GaugeValue, FMemClock, func(s Sample) float64 { return float64(s.MemClockMHz) * 1e6 }},
	{gpuDesc("mdm_gpu_clock_event_reasons", "Bit set of NVML clock event (throttle) reasons; see mdm_gpu_throttled."),
		prometheus.GaugeValue, FThrottle, func(s Sample) float64 { return float64(s.Throttle) }},
	{gpuDesc("mdm_gpu_pcie_tx_bytes_per_second", "PCIe transmit throughput."),
		prometheus.GaugeValue, FPCIe, func(s Sample) float64 { return s.PCIeTxBps }},
	{gpuDesc("mdm_gpu_pcie_rx_bytes_per_second", "PCIe receive throughput."),
		prometheus.GaugeValue, FPCIe, func(s Sample) float64 { return s.PCIeRxBps }},
	{gpuDesc("mdm_gpu_nvlink_tx_bytes_per_second", "NVLink data transmit throughput over all active links."),
		prometheus.GaugeValue, FNVLink, func(s Sample) float64 { return s.NVLinkTxBps }},
	{gpuDesc("mdm_gpu_nvlink_rx_bytes_per_second", "NVLink data receive throughput over all active links."),
		prometheus.GaugeValue, FNVLink, func(s Sample) float64 { return s.NVLinkRxBps }},
}

var throttledDesc = prometheus.NewDesc("mdm_gpu_throttled", "1 while the named clock event (throttle) reason is active.",
	[]string{"gpu", "name", "uuid", "reason"}, nil)

// collector exports the monitor's latest samples.
type collector struct{ m *Monitor }

// Collector returns a Prometheus collector of the latest samples (it reads, never calls
// NVML; a disabled monitor exports nothing).
func (m *Monitor) Collector() prometheus.Collector { return collector{m} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range gpuMetrics {
		ch <- g.desc
	}
	ch <- throttledDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.m.Latest() {
		labels := []string{strconv.Itoa(s.Index), s.Name, s.UUID}
		for _, g := range gpuMetrics {
			if s.Has(g.field) {
				ch <- prometheus.MustNewConstMetric(g.desc, g.kind, g.value(s), labels...)
			}
		}
		if s.Has(FThrottle) {
			for _, b := range throttleBits {
				v := 0.0
				if s.Throttle&b.bit != 0 {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(throttledDesc, prometheus.GaugeValue, v, append(labels, b.name)...)
			}
		}
	}
}

// MetricsServer is a running /metrics endpoint.
type MetricsServer struct {
	Addr     net.Addr // where it listens (useful with port 0)
	Registry *prometheus.Registry
	srv      *http.Server
	done     chan error
}

// ServeMetrics serves Prometheus metrics on addr (e.g. ":9400" or "127.0.0.1:0") at
// /metrics: the GPU telemetry of m (if enabled), the Go runtime and process collectors,
// and any extra collectors (training loss, tokens/s, … registered by the caller; more can
// be added later through the returned Registry).
func ServeMetrics(addr string, m *Monitor, extra ...prometheus.Collector) (*MetricsServer, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	if m != nil {
		cs = append(cs, m.Collector())
	}
	cs = append(cs, extra...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("nvml: registering metrics: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nvml: --metrics-addr %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ms := &MetricsServer{Addr: ln.Addr(), Registry: reg, done: make(chan error, 1),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() { ms.done <- ms.srv.Serve(ln) }()
	return ms, nil
}

// Close stops the endpoint.
func (ms *MetricsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := ms.srv.Shutdown(ctx)
	if serr := <-ms.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
