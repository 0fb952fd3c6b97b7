// Owns the pipeline schedule generators: pure functions from (stages, micro-batches[, chunks]) to compute-only programs.
#pragma once

#include <string_view>

#include "runtime/config/choices.h"
#include "runtime/schedule/instr.h"

namespace troupe::pipeline {

// Every generator emits compute only: Forward, Backward and one final OptimizerStep per stage. The
// communication they imply is added by add_communication (comm_pass.h). Each micro-batch's forward and
// backward appears exactly once per virtual stage, and each stage's order respects the data
// dependencies (a stage never runs a backward before the forward of the same micro-batch and chunk).
// `p` (stages) and `m` (micro-batches) must be >= 1, `v` (chunks per stage) >= 1; otherwise
// troupe::Error(ErrorKind::kConfig). The `_stage` variants return one stage's program (what a stage
// actor needs); the others return the whole schedule, stage 0 first.

// Naive model parallelism: a single micro-batch goes forward through every stage, then backward.
// Stage s: F0 B0 STEP.
Schedule make_layer_parallel(int p);

// GPipe: every stage runs all m forwards, then all m backwards in natural order (B0 first, as
// PyTorch's ScheduleGPipe), then STEP. Stage 0 holds all m micro-batches' activations at its peak.
// Stage s: F0 F1 .. F(m-1) B0 B1 .. B(m-1) STEP.
Schedule make_gpipe(int p, int m);
Program make_gpipe_stage(int p, int m, int stage);

// 1F1B, PipeDream-Flush (Megatron's forward_backward_pipelining_without_interleaving):
// stage s runs w = min(p - s - 1, m) warm-up forwards, then m - w rounds of one forward and one
// backward, then w cool-down backwards, then STEP. Stage s never holds more than min(p - s, m)
// micro-batches' activations. Example p = 2, m = 3: stage 0 "F0 F1 B0 F2 B1 B2 STEP",
// stage 1 "F0 B0 F1 B1 F2 B2 STEP".
Schedule make_1f1b(int p, int m);
Program make_1f1b_stage(int p, int m, int stage);

// Interleaved 1F1B (Megatron-LM's forward_backward_pipelining_with_interleaving). Stage s holds v
// chunks; chunk c is virtual stage c*p + s. Forwards run in Megatron's "schedule table" order: the
// micro-batches are cut into groups and, group by group, each of its micro-batches runs chunk 0, then
// each runs chunk 1, and so on. Backwards walk the same table with the chunk order reversed (chunk v-1
// first). Stage s runs w = min(v*m, 2*(p - s - 1) + (v - 1)*G) warm-up forwards (G: the largest
// group), then alternates one forward and one backward, then the remaining backwards, then STEP.
// Groups: with m % p == 0, m/p groups of p: exactly Megatron's default. Megatron rejects other m (it
// needs m >= p, and with its default group of p, m % p == 0; a tuned group size only relaxes this to
// "the last group holds >= p", since a smaller group makes chunk c + 1 wait on a round trip through
// the pipeline that cannot finish: a deadlock). Here any m >= 1 is accepted: m is cut into
// q = max(1, floor(m/p)) groups as even as possible, larger first, so every group holds >= p
// micro-batches when m >= p, and m < p gives one group of m. Uneven m costs memory, not time: G
// exceeds p by ceil((m mod p) / q), adding (v-1) times that to the warm-up.
// With free communication the simulated bubble is exactly (p-1)/(v*m + p-1) for every m >= p,
// against (p-1)/(m + p-1) for 1F1B (the property tests check both over p 1..8 x m 1..16 x v 2..3,
// with no deadlock and inputs always ready). The price is memory: stage 0 holds
// 2(p-1) + (v-1)p + 1 chunk activations, each 1/v of a stage, about (1 + 1/v) times 1F1B's p.
// v = 1 gives exactly make_1f1b.
Schedule make_interleaved_1f1b(int p, int m, int v);
Program make_interleaved_1f1b_stage(int p, int m, int v, int stage);

// By name: "layer", "gpipe", "1f1b" or "interleaved". "layer" requires m == 1 and all but
// "interleaved" require v == 1; anything else, and an unknown kind, is troupe::Error(kConfig) saying
// what is allowed.
Schedule make_schedule(ScheduleKind kind, int p, int m, int v = 1);
// The same, by name (as a person writes it); an unknown name is troupe::Error(kConfig) listing the names.
Schedule make_schedule(std::string_view kind, int p, int m, int v = 1);

}  // namespace troupe::pipeline
