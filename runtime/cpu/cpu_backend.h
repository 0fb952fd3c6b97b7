// Owns CpuBackend: the reference implementation of Backend on host memory, threaded over a ThreadPool.
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "runtime/backend.h"
#include "runtime/conv_dims.h"
#include "runtime/cpu/bf16_gemm.h"
#include "runtime/cpu/packed_sgemm.h"
#include "runtime/thread_pool.h"

namespace troupe {

class CpuBackend final : public Backend {
 public:
  // threads <= 0: one per hardware thread.
  explicit CpuBackend(int threads);
  ~CpuBackend() override;

  Device device() const override { return Device::cpu(); }
  int threads() const override { return pool_->size(); }
  ThreadPool& pool() { return *pool_; }
  void set_deterministic(bool on) override { deterministic_ = on; }
  bool deterministic() const override { return deterministic_; }
  // bf16 runs on the best kernel this CPU has (runtime/cpu/bf16_gemm.h); set_bf16_kernel picks another
  // (tests compare the two).
  void set_precision(Precision precision) override { precision_ = precision; }
  Precision precision() const override { return precision_; }
  void set_bf16_kernel(Bf16Kernel kernel) { bf16_kernel_ = kernel; }
  Bf16Kernel bf16_kernel() const { return bf16_kernel_; }
  // f32 products run on troupe's packed AVX-512 kernel where the CPU has AVX-512F
  // (runtime/cpu/packed_sgemm.h), else on OpenBLAS in fixed row blocks; set_f32_kernel picks the other
  // (tests and bench/bench_sgemm.cpp compare the two).
  void set_f32_kernel(F32Kernel kernel) { f32_kernel_ = kernel; }
  F32Kernel f32_kernel() const { return f32_kernel_; }
  std::span<ExactSum> exact_grad(const Tensor& grad) override;
  void flush_exact_grad(const Tensor& grad) override;

  Tensor empty(Shape shape, DType dtype) override { return Tensor::empty(std::move(shape), dtype); }
  void zero(const Tensor& t) override;

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c, float alpha,
              float beta) override;
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                      std::int64_t row_block = 0) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                       const Tensor& dbias, std::int64_t row_block) override;
  void linear_forward_exact(const Tensor& x, const Tensor& w, const Tensor& bias, std::int64_t chunk,
                            std::span<ExactSum> acc) override;
  void linear_input_grad_exact(const Tensor& dy, const Tensor& w, std::int64_t chunk, std::span<ExactSum> acc) override;

  void gelu_forward(const Tensor& x, const Tensor& y) override;
  void gelu_backward(const Tensor& x, const Tensor& dy, const Tensor& dx) override;
  void relu_forward(const Tensor& x, const Tensor& y) override;
  void relu_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void add_inplace(const Tensor& acc, const Tensor& b) override;

  void softmax_forward(const Tensor& x, const Tensor& y) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) override;
  void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y,
                         const Tensor& mean, const Tensor& rstd) override;
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& y) override;
  void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dtable) override;

  void attention_forward(const Tensor& qkv, int n_head, const Tensor& out, const Tensor& probs) override;
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& probs, int n_head,
                          const Tensor& dqkv) override;

  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int stride,
                      int pad) override;
  void conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                       const Tensor& dbias, int stride, int pad) override;
  void batchnorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                         const Tensor& running_var, bool training, float momentum, float eps, const Tensor& y,
                         const Tensor& mean, const Tensor& rstd, ReplicaSum* replicas) override;
  void batchnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                          const Tensor& rstd, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                          ReplicaSum* replicas) override;
  void avgpool_forward(const Tensor& x, const Tensor& y) override;
  void avgpool_backward(const Tensor& dy, const Tensor& dx) override;

  void lstm_forward(const Tensor& xg, const Tensor& w_hh, const Tensor& b_hh, const Tensor& h, const Tensor& c,
                    const Tensor& acts) override;
  void lstm_backward(const Tensor& dh, const Tensor& w_hh, const Tensor& c, const Tensor& acts,
                     const Tensor& dz) override;

  double cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& probs,
                               const Tensor& losses) override;
  void cross_entropy_backward(const Tensor& probs, const Tensor& targets, float scale,
                              const Tensor& dlogits) override;

  // Row-major sgemm on raw pointers over the pool: the packed kernel, or OpenBLAS in fixed blocks of rows
  // (or columns when M is small). Either way an element's bits do not depend on the thread count.
  void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
            const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
            std::int64_t ldc);

 private:
  // gemm() in f32, or gemm_bf16() when the precision is bf16: the products of the linear layers.
  void linear_product(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                      std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

  // c[rows, n] = a[rows, k] @ op(b): one product per block of row_block rows in deterministic mode.
  void rows_gemm(bool trans_b, std::int64_t rows, std::int64_t n, std::int64_t k, const float* a, const float* b,
                 float beta, float* c, std::int64_t row_block);

  // Deterministic mode's linear products (cpu_matmul.cpp): each element's sum in a fixed order whatever
  // the shape. c[rows, n] = (c +) a[rows, k] @ op(b), op(b) = b^T for b [n, k] when trans_b, else b [k, n].
  void ordered_gemm(bool trans_b, std::int64_t rows, std::int64_t n, std::int64_t k, const float* a, const float* b,
                    bool accumulate, float* c);
  // product[out, in] = dy[rows, out]^T @ x[rows, in].
  void ordered_weight_product(std::int64_t out, std::int64_t in, std::int64_t rows, const float* dy, const float* x,
                              float* product);

  // Whether a convolution runs on runtime/cpu/conv_packed.h (fast mode, AVX-512, a shape it takes).
  bool packed_conv(const ConvDims& d) const;
  // dbias[o] += the sum of dy's channel o (fast mode's convolution bias gradient).
  void add_bias_grad(const ConvDims& d, const float* dy, float* dbias);

  // acc[i] += to_exact(x[i]) over the pool.
  void add_exact_parallel(std::span<ExactSum> acc, const float* x);

  std::unique_ptr<ThreadPool> pool_;
  bool deterministic_ = false;
  Precision precision_ = Precision::f32;
  Bf16Kernel bf16_kernel_ = best_bf16_kernel();
  F32Kernel f32_kernel_ = best_f32_kernel();
  // Exact accumulators by gradient buffer (its data pointer); see Backend::set_deterministic.
  std::mutex exact_mu_;
  std::unordered_map<const float*, std::vector<ExactSum>> exact_;
};

// Single-threaded row-major sgemm (the BLAS call every CPU product goes through).
void sgemm_serial(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                  const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                  std::int64_t ldc);

}  // namespace troupe
