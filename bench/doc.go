// Package bench measures mdm-gpu side by side with what users would pick instead
// (issue 9, perf-anchors.md): per-op benchmarks from the opstest case table on the CPU
// reference and the simulated device, training-step benchmarks of the tiny preset and
// owt-small, the PyTorch baseline of the same MD4 model and step (bench/pytorch/md4.py),
// which also checks our loss, gradients and AdamW update against an independent
// implementation from our safetensors checkpoint, and the results files and table under
// bench/results/.
//
// Benchmarks (thread count = -cpu, i.e. GOMAXPROCS; the CPU backend uses as many workers):
//
//	go test -run '^$' -bench 'TrainStep' -cpu 1,2 -count 5 ./bench/
//	go test -run '^$' -bench 'Ops/cpu' -cpu 2 ./bench/
//	go test -tags openblas -run '^$' -bench 'TrainStep' -cpu 1,2 ./bench/   # OpenBLAS GEMM
//
// The side-by-side comparison with PyTorch (same machine, same thread count, one run) is
// `mdm-gpu bench cpu-step`; `go test -run PyTorch ./bench/` runs the numeric agreement
// check when /usr/bin/python3 imports torch.
//
// Tests never time anything; benchmarks and the bench command report, and the targets of
// issue 9 are read from their output.
package bench
