// Owns PowerSGD's dense kernels on row-major float matrices: M·Q, Mᵀ·P, P·Qᵀ, column orthogonalization, and when a matrix is worth compressing.
//
// Shapes (Vogels et al., "PowerSGD: Practical Low-Rank Gradient Compression", 2019): a gradient
// matrix M is rows × cols; P is rows × r; Q is cols × r; all row-major. One step is
//   P = M Q → allreduce P → orthogonalize P → Q = Mᵀ P → allreduce Q → approx = P Qᵀ
// so only (rows + cols)·r floats cross the wire instead of rows·cols.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace troupe::comm {

// True when a rows × cols matrix at rank r is sent as P and Q: it is a real matrix (both sides
// > 1), r is below both sides, and (rows + cols)·r < rows·cols. Otherwise it is sent uncompressed
// (vectors, biases, LayerNorm weights, tiny matrices: they cost little and compress badly).
bool powersgd_compresses(std::size_t rows, std::size_t cols, std::size_t rank);

// p (rows × r) = m (rows × cols) · q (cols × r).
void matmul_mq(std::span<const float> m, std::span<const float> q, std::size_t rows, std::size_t cols, std::size_t r,
               std::span<float> p);
// q (cols × r) = mᵀ · p, with m rows × cols and p rows × r.
void matmul_mtp(std::span<const float> m, std::span<const float> p, std::size_t rows, std::size_t cols, std::size_t r,
                std::span<float> q);
// m (rows × cols) = p (rows × r) · qᵀ (q is cols × r).
void matmul_pqt(std::span<const float> p, std::span<const float> q, std::size_t rows, std::size_t cols, std::size_t r,
                std::span<float> m);

// Modified Gram-Schmidt with re-orthogonalization on the r columns of p (rows × r), in place, dot
// products in double. A column left with at most 2^-20 of its norm (dependent on earlier columns) or
// at most 1e-30 becomes all zeros rather than noise or NaN, so a zero gradient yields a zero
// approximation; a non-finite column becomes NaN (visible, not hidden). Deterministic: the same input
// gives the same bits.
void orthogonalize_columns(std::span<float> p, std::size_t rows, std::size_t r);

// Fills q with standard-normal values from a seeded generator (splitmix64 + Box-Muller), so every
// rank that uses the same seed starts PowerSGD from the same Q.
void fill_normal(std::span<float> q, std::uint64_t seed);

}  // namespace troupe::comm
