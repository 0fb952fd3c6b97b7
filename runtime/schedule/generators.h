// Owns the pipeline schedule generators: pure functions from (stages, micro-batches[, chunks]) to compute-only programs.
#pragma once

#include <string_view>

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

// Interleaved 1F1B (Megatron-LM's forward_backward_pipelining_with_interleaving, in the form with
// micro-batch groups of p, which lifts the old m % p == 0 rule). Stage s holds v chunks; chunk c is
// virtual stage c*p + s. Forwards run in "schedule table" order: micro-batches in groups of p (the
// last group may be smaller), and within a group chunk 0 for each of its micro-batches, then chunk 1,
// and so on. Backwards run through the same table with the chunk order reversed (chunk v-1 first).
// Stage s runs min(v*m, 2*(p - s - 1) + (v - 1)*p) warm-up forwards, then alternates one forward and
// one backward, then the remaining backwards, then STEP.
// Any m >= 1 is accepted: with m < p every micro-batch forms one group, which the warm-up rule above
// keeps deadlock-free (the property tests simulate p 1..8 x m 1..16 x v 1..3). v = 1 gives exactly
// make_1f1b. The bubble is about (p-1)/(v*m + p-1) of the makespan, against (p-1)/(m + p-1) for 1F1B.
Schedule make_interleaved_1f1b(int p, int m, int v);
Program make_interleaved_1f1b_stage(int p, int m, int v, int stage);

// By name: "layer" (m and v ignored... must be 1? see below), "gpipe", "1f1b" or "interleaved".
// "layer" requires m == 1 and all but "interleaved" require v == 1; anything else, and an unknown
// kind, is troupe::Error(ErrorKind::kConfig) saying what is allowed.
Schedule make_schedule(std::string_view kind, int p, int m, int v = 1);

}  // namespace troupe::pipeline
