// Owns the tensor group's four communication operations — Megatron's f and g, and sequence parallelism's all-gather and reduce-scatter — and the bytes each moves.
//
// A column-parallel linear (weight split by outputs) takes a replicated input and gives each shard a
// slice of the outputs; a row-parallel linear (weight split by inputs) takes that slice and gives each
// shard a partial sum of the whole output. Between them sit (Megatron-LM, Shoeybi et al. 2019, sec. 3):
//
//   op       forward              backward             where
//   f        identity             allreduce (sum)      before a column-parallel linear: every shard's
//                                                      input gradient is a partial sum
//   g        allreduce (sum)      identity             after a row-parallel linear: the outputs are
//                                                      partial sums; their gradient is replicated
//   gather   all-gather rows      reduce-scatter rows  f under sequence parallelism: the input is split
//                                                      by rows (tokens), the linear needs all of them
//   scatter  reduce-scatter rows  all-gather rows      g under sequence parallelism: the sum is needed
//                                                      only for this shard's rows
//
// Algorithms and bytes (T ranks, a buffer of B bytes whole, B divisible by T; sent per rank, as many
// received): reduce-scatter and all-gather each send (T - 1)/T · B in one round (every rank sends
// each peer that peer's chunk); allreduce is reduce-scatter then all-gather, 2 (T - 1)/T · B. So f and
// g each move 2 (T - 1)/T · B per rank, gather and scatter (T - 1)/T · B. A GPT block per micro-batch
// of B S C floats: plain tensor parallelism 2 g forward + 2 f backward = 8 (T - 1)/T · 4 B S C bytes;
// sequence parallelism 2 gathers + 2 scatters forward, their duals backward, and the 2 gathers again
// backward (the whole LayerNorm outputs are not kept for the weight gradients: each shard keeps its
// own rows and gathers them again, as Megatron-LM does) = 10 (T - 1)/T · 4 B S C bytes.
//
// Sequence split: activations [samples, tokens, width] with tokens divisible by T; shard r holds tokens
// [r tokens/T, (r + 1) tokens/T) of every sample, [samples, tokens/T, width]. The gather and the scatter
// below take `samples` for it (1: the buffer's rows cut in T contiguous chunks).
//
// Determinism: chunk c of a sum is added in rank order, ((x_0 + x_1) + x_2) + ..., by its owner c and
// then copied, so every rank ends with the same bits, on every run. Rows are split in contiguous
// near-equal chunks (ring_chunk): rank r owns chunk r. All ranks call the same operations in the
// same order with the same lengths (FIFO per tag orders back-to-back operations).
#pragma once

#include <cstddef>
#include <span>

#include "runtime/comm/tensor_group.h"
#include "runtime/exact_sum.h"
#include "runtime/param.h"

namespace troupe::comm {

// Message tags of the tensor group's collectives.
inline constexpr std::uint32_t kTensorReduceScatterTag = 0x7470'0001;
inline constexpr std::uint32_t kTensorAllGatherTag = 0x7470'0002;

// ---- the four operations (in place where shapes allow; identity for a group of one) ----

// f: forward is the identity (nothing to send); backward sums the shards' input gradients.
inline void f_forward(TensorGroup, std::span<float>) {}
void f_backward(TensorGroup group, std::span<float> grad);
// g: forward sums the shards' partial outputs; backward is the identity.
void g_forward(TensorGroup group, std::span<float> y);
inline void g_backward(TensorGroup, std::span<float>) {}
// gather: forward all-gathers this shard's part of the sequence `local` into `whole` (every sample's
// tokens in order); backward reduce-scatters `whole`'s gradient into this shard's part `local`.
void gather_forward(TensorGroup group, std::span<const float> local, std::span<float> whole, std::int64_t samples = 1);
void gather_backward(TensorGroup group, std::span<float> whole, std::span<float> local, std::int64_t samples = 1);
// scatter: forward reduce-scatters partial sums `whole` into this shard's summed part `local`;
// backward all-gathers the part's gradient `local` into `whole`.
void scatter_forward(TensorGroup group, std::span<float> whole, std::span<float> local, std::int64_t samples = 1);
void scatter_backward(TensorGroup group, std::span<const float> local, std::span<float> whole,
                      std::int64_t samples = 1);

// Deterministic mode's g forward and f backward: the shards' exact partial sums (Backend's
// linear_forward_exact, linear_input_grad_exact) added over the group, as integers, so any grouping
// gives the same total, and rounded once into `out`. T shards so give the bits one device's exact
// sum gives. `partial` is left summed. Each moves 16-byte sums: four times f's and g's bytes.
void g_forward_exact(TensorGroup group, std::span<ExactSum> partial, std::span<float> out);
void f_backward_exact(TensorGroup group, std::span<ExactSum> partial, std::span<float> out);
// The same under sequence parallelism (scatter forward, gather backward): the exact partial sums of
// the whole sequence reduce-scattered, this shard's part rounded once into `out` (its length). The sum
// of each element is the integer the allreduce forms, so the bits are those of g_forward_exact.
void scatter_forward_exact(TensorGroup group, std::span<const ExactSum> partial, std::span<float> out,
                           std::int64_t samples);
void gather_backward_exact(TensorGroup group, std::span<const ExactSum> partial, std::span<float> out,
                           std::int64_t samples);

// ---- the collectives they are made of ----

// In place: every rank's data becomes the elementwise sum (max) of all ranks'.
void allreduce_sum(TensorGroup group, std::span<float> data);
void allreduce_sum(TensorGroup group, std::span<double> data);
void allreduce_sum(TensorGroup group, std::span<ExactSum> data);
void allreduce_max(TensorGroup group, std::span<float> data);
// Chunk `rank` of `whole` (ring_chunk's split) becomes the sum over ranks of their chunk `rank`;
// written to `local` (its length is that chunk's). `whole` is left as it was.
void reduce_scatter_rows(TensorGroup group, std::span<const float> whole, std::span<float> local);
// `whole` becomes every rank's `local` in rank order (chunk r from rank r).
void all_gather_rows(TensorGroup group, std::span<const float> local, std::span<float> whole);
// The sequence split's reduce-scatter and all-gather (see "Sequence split"): with samples = 1 the two
// above; else the chunks are gathered by shard and reordered into samples (a copy of the buffer).
void reduce_scatter_sequence(TensorGroup group, std::span<const float> whole, std::span<float> local,
                             std::int64_t samples);
void reduce_scatter_sequence(TensorGroup group, std::span<const ExactSum> whole, std::span<ExactSum> local,
                             std::int64_t samples);
void all_gather_sequence(TensorGroup group, std::span<const float> local, std::span<float> whole,
                         std::int64_t samples);

// Bytes one rank sends (and receives) for a whole buffer of `bytes` over `ranks` ranks, `bytes`
// divisible by `ranks`: (ranks - 1)/ranks · bytes for reduce-scatter and all-gather, twice that for
// allreduce; 0 for a group of one.
std::size_t reduce_scatter_bytes(std::size_t bytes, int ranks);
std::size_t all_gather_bytes(std::size_t bytes, int ranks);
std::size_t allreduce_bytes(std::size_t bytes, int ranks);

// A split parameter's whole tensor, gathered from every shard (all shards call together); a copy of
// the value for a replicated one. What weight files hold.
Tensor gather_whole(TensorGroup group, const Param& param);
// The whole shape of a (split) parameter: its shard shape with the split dimension times the shards.
Shape gather_shape(const Param& param);

}  // namespace troupe::comm
