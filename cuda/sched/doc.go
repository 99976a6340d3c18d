// Package sched trains one MD4 model data-parallel over several devices (architecture.md
// §7): one goroutine per device of the process, locked to its OS thread, owns a replica
// (model, workspace, optimizer) on that device's backend; the global batch is split over
// devices and, on each device, over accumulation micro-batches; gradients are summed over
// all devices with an all-reduce and every replica applies the identical AdamW + EMA update.
//
// # Exactness
//
// Results do not depend on how the global batch is split (pitfalls B11):
//
//   - every row of the global batch gets the same data (data.Windows.TrainRows), time,
//     mask (Philox addressed by the global position) and loss weight (normalised by the
//     global batch size) whichever device computes it, so summing gradients over devices
//     gives the gradient of the global mean loss, with no further scaling;
//   - a device sums its micro-batch gradients as a binary tree in micro-batch order, and
//     the host-staged all-reduces (NewLocalGroup, DialTCP) continue the same tree over
//     ranks (TreeSum): with equal micro-batches and a power-of-two accumulation count, the
//     summation order is that of one tree over all micro-batches of the step, so
//     1 device × 4 micro-batches, 2 × 2 and 4 × 1 give bit-identical gradients, losses
//     and parameters. (Config.LowMemAccum instead lets the backward pass accumulate in
//     place: no extra memory, equal within fp32 summation-order tolerance. NCCL reduces in
//     its own order: equal within tolerance.)
//   - the loss is summed per sequence in global row order, so the reported loss equals the
//     single-device train.Trainer's bit for bit;
//   - the gradient norm is computed from the reduced gradient and rank 0's value is
//     broadcast: every rank clips with the same scale.
//
// # Failures
//
// Before the gradients are reduced, every rank contributes to a small control all-reduce
// whether it failed and whether its loss or gradient is non-finite. All ranks therefore
// decide alike: stop together (an error on any rank, or a NaN without
// Step.SkipNonFinite), skip the update together (a NaN/Inf with SkipNonFinite; every rank
// counts it), or go on. No rank is left waiting in a collective (pitfalls B12); a rank that
// cannot take part any more aborts the communicator, which fails the others' pending
// collectives, and every wait is bounded by a timeout that names the missing rank.
//
// # Communicators
//
// Comm is the host-side communicator: NewLocalGroup for N devices in one process
// (simulated, CPU or GPUs), DialTCP for one process per device on one or several machines
// (rendezvous at rank 0, torchrun-style or Slurm variables: LaunchEnvFromOS). On real
// GPUs the gradients go through NCCL (NCCLReducer, build tag `cuda`, libnccl.so.2 loaded
// with dlopen at run time), and the Comm carries the NCCL unique id and the control
// traffic.
//
// # Launching on several machines
//
// One process per GPU, as with torchrun:
//
//	# on each of 2 machines with 8 GPUs (node 0 is 10.0.0.1):
//	for i in $(seq 0 7); do
//	  RANK=$((NODE*8 + i)) WORLD_SIZE=16 LOCAL_RANK=$i MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 \
//	    mdm-gpu train --config owt.toml --devices $i --batch 512 &
//	done; wait
//
//	# or with torchrun as a plain launcher (it sets the same variables):
//	torchrun --nnodes 2 --nproc-per-node 8 --node-rank $NODE --master-addr 10.0.0.1 \
//	  --master-port 29500 --no-python mdm-gpu train --config owt.toml --batch 512
//
//	# or under Slurm, one task per GPU (rank, world and master from SLURM_* variables):
//	srun --nodes 2 --ntasks-per-node 8 --gpus-per-task 1 mdm-gpu train --config owt.toml --batch 512
//
// Every process must run the same binary and configuration: the rendezvous compares a
// fingerprint of the configuration (Config.Fingerprint) and refuses a rank that differs,
// naming the first differing setting. --batch is the global batch; it must be a multiple
// of WORLD_SIZE × --accum.
package sched
