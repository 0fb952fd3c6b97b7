// Owns the Backend interface: every numeric operation the models use, forward and backward.
//
// The CPU backend is the reference implementation; a CUDA backend implements the same interface and is
// checked against it. Conventions, kept by every backend:
//  - tensors are contiguous, row-major, f32 unless stated; "[N, C]" means N rows of C values;
//  - outputs named y/dx/out are overwritten; parameter gradients (dw, db, dtable) are accumulated (+=),
//    so several micro-batches may add into the same gradient before an optimizer step;
//  - reductions over rows into parameter gradients run in row order, so a batch processed whole or as
//    several micro-batches (whole samples each) yields bitwise-identical gradients when the backend is
//    deterministic (see set_deterministic).
#pragma once

#include <cstdint>
#include <span>

#include "runtime/config/choices.h"
#include "runtime/exact_sum.h"
#include "runtime/replica_sum.h"
#include "runtime/tensor.h"

namespace troupe {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual int threads() const = 0;

  // Deterministic mode: every element of a linear product is its own terms summed in a fixed order,
  // whatever the product's shape, so a row's result does not depend on which rows share the call, nor
  // an output's on which other outputs do (a tensor-parallel slice of a product has the whole
  // product's bits); weight gradients are formed one sample (`row_block` rows) at a time; and parameter
  // gradients (dw, dbias, dtable of
  // the kernels below) are summed exactly: each sample's (or row's) contribution goes into a 128-bit
  // fixed-point accumulator kept for that gradient buffer (runtime/exact_sum.h), not into the float
  // gradient. The total is therefore the same integer however the batch is split over micro-batches,
  // stages or data-parallel replicas, and in whatever order replicas' accumulators are added.
  // flush_exact_grad() then adds the rounded total to the float gradient.
  virtual void set_deterministic(bool on) = 0;
  virtual bool deterministic() const = 0;

  // train.precision: the operands of linear_forward/linear_backward's products. bf16 rounds them to bf16
  // (to nearest, ties to even) and sums in f32; inputs, outputs and gradients stay f32 tensors
  // (runtime/cpu/bf16_gemm.h). The default supports f32 only and says so for bf16.
  virtual void set_precision(Precision precision);
  virtual Precision precision() const { return Precision::f32; }

  // The exact accumulator behind gradient buffer `grad` (grad.numel() elements; zeros when nothing was
  // added since the last flush). Data-parallel replicas add these across ranks before flushing.
  virtual std::span<ExactSum> exact_grad(const Tensor& grad);
  // grad += rounded accumulator, then the accumulator is cleared (a no-op change for a clear one).
  virtual void flush_exact_grad(const Tensor& grad);

  // Uninitialised tensor in this backend's memory.
  virtual Tensor empty(Shape shape, DType dtype = DType::f32) = 0;
  virtual void zero(const Tensor& t) = 0;

  // c = alpha * op(a) @ op(b) + beta * c, with a, b, c 2-D and op = transpose when trans_* is set.
  virtual void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, const Tensor& c,
                      float alpha, float beta) = 0;

  // y[N, out] = x[N, in] @ w[out, in]^T (+ bias[out] when defined). row_block: rows per sample; in
  // deterministic mode each sample is its own product, so a row's result does not depend on how many
  // samples share the call (BLAS picks kernels by shape).
  virtual void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                              std::int64_t row_block = 0) = 0;
  // dx = dy @ w (when dx is defined); dw += dy^T @ x; dbias += column sums of dy (when defined).
  // row_block: rows per sample, the unit of products and of ordered reduction in deterministic mode.
  virtual void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,
                               const Tensor& dw, const Tensor& dbias, std::int64_t row_block) = 0;

  // Exact products, for the sums tensor parallelism cuts into T pieces (deterministic mode). The sum
  // runs in chunks of `chunk` consecutive terms (chunk divides its length): each chunk is summed in
  // float in a fixed order (as deterministic linear products are) and the chunks are added as an exact
  // sum (runtime/exact_sum.h). A sum cut between shards at chunk boundaries therefore gives, once the
  // group adds the shards' exact sums and rounds once, the same bits as the whole sum on one device.
  // acc[N * out] = exact(bias[o], when defined) + sum over chunks c of exact(sum over i in c of
  // x[n, i] w[o, i]), overwritten.
  virtual void linear_forward_exact(const Tensor& x, const Tensor& w, const Tensor& bias, std::int64_t chunk,
                                    std::span<ExactSum> acc);
  // The input gradient the same way, in chunks of outputs: acc[N * in] = sum over chunks c of
  // exact(sum over o in c of dy[n, o] w[o, i]), overwritten.
  virtual void linear_input_grad_exact(const Tensor& dy, const Tensor& w, std::int64_t chunk, std::span<ExactSum> acc);

  // GELU with the tanh approximation (GPT-2's): y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  virtual void gelu_forward(const Tensor& x, const Tensor& y) = 0;
  virtual void gelu_backward(const Tensor& x, const Tensor& dy, const Tensor& dx) = 0;
  virtual void relu_forward(const Tensor& x, const Tensor& y) = 0;
  // dx = dy where y > 0, else 0 (y: the forward output).
  virtual void relu_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) = 0;

  // out = a + b (elementwise, same shapes); acc += b.
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void add_inplace(const Tensor& acc, const Tensor& b) = 0;

  // Row-wise softmax of x[N, C].
  virtual void softmax_forward(const Tensor& x, const Tensor& y) = 0;
  // dx = y * (dy - sum(dy * y)) per row.
  virtual void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) = 0;

  // LayerNorm over the last dimension of x[N, C]: saves mean[N] and rstd[N] (1/sqrt(var + eps)).
  virtual void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& y,
                                 const Tensor& mean, const Tensor& rstd) = 0;
  // dx overwritten; dw, db accumulated.
  virtual void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                                  const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db) = 0;

  // y[N, C] = table[ids[n]] (ids i32 [N], each in [0, V)).
  virtual void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& y) = 0;
  // dtable[ids[n]] += dy[n], in order of n.
  virtual void embedding_backward(const Tensor& ids, const Tensor& dy, const Tensor& dtable) = 0;

  // Causal multi-head self-attention. qkv[B, T, 3C] holds q, k, v (in that order) for n_head heads of
  // size C/n_head; out[B, T, C]; probs[B, n_head, T, T] saves the attention weights for backward.
  virtual void attention_forward(const Tensor& qkv, int n_head, const Tensor& out, const Tensor& probs) = 0;
  // dqkv overwritten.
  virtual void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& probs, int n_head,
                                  const Tensor& dqkv) = 0;

  // ---- convolutional networks (model.kind = cnn). Not every backend has them: the defaults throw a
  // config error naming the backend, which config validation normally reports first.

  // 2-D convolution as torch.nn.Conv2d (cross-correlation) of x[N, C, H, W] with w[O, C, k, k], zero
  // padding `pad` and stride `stride` on both axes (runtime/conv_dims.h): y[N, O, Ho, Wo] overwritten,
  // plus bias[O] when defined. Each sample is computed on its own, so a row's result does not depend on
  // the other samples in the call or on the thread count.
  virtual void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, int stride,
                              int pad);
  // dx overwritten (when defined); dw and dbias (when defined) accumulated. Parameter gradients are summed
  // over samples in a fixed order; in deterministic mode each sample's contribution is added exactly.
  virtual void conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx,
                               const Tensor& dw, const Tensor& dbias, int stride, int pad);

  // Batch normalisation as torch.nn.BatchNorm2d over x[N, C, S...] (S: the spatial positions), per channel.
  // training: normalise by the batch's mean and biased variance (saved in mean[C] and rstd[C] =
  // 1/sqrt(var + eps) for backward), then update running_mean/running_var in place:
  //   running = (1 - momentum) running + momentum batch, with the unbiased variance (n/(n-1)) for running_var.
  // !training: normalise by running_mean/running_var; mean and rstd are not touched (may be undefined).
  // y = gamma * x_hat + beta, overwritten.
  // The statistics are exact sums of per-sample contributions (runtime/exact_sum.h), so they do not depend
  // on how the batch is split. `replicas` (training only; null: this batch alone) adds them over the
  // data-parallel replicas first, as torch.nn.SyncBatchNorm: every replica normalises by the statistics
  // of the whole batch (and all replicas update their running statistics alike).
  virtual void batchnorm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                 const Tensor& running_var, bool training, float momentum, float eps, const Tensor& y,
                                 const Tensor& mean, const Tensor& rstd, ReplicaSum* replicas);
  // Backward of the training-mode forward (batch statistics): dx overwritten; dgamma, dbeta accumulated
  // (this share's contributions: data parallelism sums them with the other gradients). `replicas`, as in
  // forward: dx uses the whole batch's sums of dy and dy·x_hat (SyncBatchNorm's backward reductions).
  virtual void batchnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                  const Tensor& rstd, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta,
                                  ReplicaSum* replicas);

  // Global average pooling: y[N, C] = mean of x[N, C, S...] over its S positions; dx = dy / S broadcast.
  virtual void avgpool_forward(const Tensor& x, const Tensor& y);
  virtual void avgpool_backward(const Tensor& dy, const Tensor& dx);

  // ---- recurrent networks (model.kind = lstm). CPU backend only so far (the defaults throw, as above).

  // The recurrence of one torch.nn.LSTM layer over B independent sequences of T steps, each from zero
  // state (h_0 = c_0 = 0). xg[B, T, 4H] is the input projection x W_ih^T + b_ih, computed by the caller
  // as one product over every step; w_hh[4H, H], b_hh[4H]. Gate order i, f, g, o (torch's):
  //   z_t = xg[:, t] + h_{t-1} W_hh^T + b_hh;  i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
  //   c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
  // h[B, T, H] (the layer's output), c[B, T, H] and acts[B, T, 4H] (the gate activations) are overwritten;
  // c and acts are what backward needs. Each row's result does not depend on the other rows in the call
  // in deterministic mode, nor on the thread count.
  virtual void lstm_forward(const Tensor& xg, const Tensor& w_hh, const Tensor& b_hh, const Tensor& h,
                            const Tensor& c, const Tensor& acts);
  // Back through the recurrence: dh[B, T, H] (the loss's gradient with respect to h) to dz[B, T, 4H], the
  // gradient with respect to every step's pre-activation z_t (overwritten). It is also the gradient of
  // xg, b_ih and b_hh, and dW_hh = sum_t dz_t^T h_{t-1}; the caller forms those as products over all steps.
  virtual void lstm_backward(const Tensor& dh, const Tensor& w_hh, const Tensor& c, const Tensor& acts,
                             const Tensor& dz);

  // Cross-entropy of logits[N, V] against targets (i32 [N]): writes probs[N, V] (softmax, kept for
  // backward; may be the logits tensor itself) and losses[N] (per-row -log p[target]); returns their sum.
  virtual double cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& probs,
                                       const Tensor& losses) = 0;
  // dlogits = scale * (probs - onehot(targets)); scale is 1/(tokens in the whole batch) for a mean loss.
  virtual void cross_entropy_backward(const Tensor& probs, const Tensor& targets, float scale,
                                      const Tensor& dlogits) = 0;
};

}  // namespace troupe
