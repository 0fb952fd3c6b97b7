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
// g each move 2 (T - 1)/T · B per rank, gather and scatter (T - 1)/T · B: sequence parallelism moves
// the same bytes per block as plain tensor parallelism, in twice as many (half-size) operations.
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
// gather: forward all-gathers this shard's rows `local` (chunk rank of `whole`) into `whole`;
// backward reduce-scatters `whole`'s gradient into this shard's rows `local`.
void gather_forward(TensorGroup group, std::span<const float> local, std::span<float> whole);
void gather_backward(TensorGroup group, std::span<float> whole, std::span<float> local);
// scatter: forward reduce-scatters partial sums `whole` into this shard's summed rows `local`;
// backward all-gathers the rows' gradient `local` into `whole`.
void scatter_forward(TensorGroup group, std::span<float> whole, std::span<float> local);
void scatter_backward(TensorGroup group, std::span<const float> local, std::span<float> whole);

// Deterministic mode's g forward and f backward: the shards' exact partial sums (Backend's
// linear_forward_exact, linear_input_grad_exact) added over the group, as integers, so any grouping
// gives the same total, and rounded once into `out`. T shards so give the bits one device's exact
// sum gives. `partial` is left summed. Each moves 16-byte sums: four times f's and g's bytes.
void g_forward_exact(TensorGroup group, std::span<ExactSum> partial, std::span<float> out);
void f_backward_exact(TensorGroup group, std::span<ExactSum> partial, std::span<float> out);

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
