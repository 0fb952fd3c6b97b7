// Owns DeviceGpt: one GPT-2 training step (llm.c style) over any Backend, with parameters in that backend's memory.
//
// The reference Trainer (models/) keeps parameters, the tied-head gradient and the optimizer on the host.
// DeviceGpt runs the same computation, op for op and in the same order, through a DeviceOps: the CPU
// one (CpuBackend, runtime/optim's optimizers and clipping) reproduces the reference trainer's losses
// bit for bit, which tests this file without a GPU; the CUDA one (CudaBackend, its update kernels)
// is what the [cuda] tests compare against the CPU, and what scripts/gpu-check times.
//
// Precision::bf16 runs every linear layer (and the LM head) with bf16 operands on the tensor cores,
// f32 accumulation and f32 outputs; weights are kept in f32 (master) and cast to bf16 once per step;
// gradients and optimizer state stay f32. Only DeviceOps that can cast (CUDA) support it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "runtime/data/dataset.h"

namespace troupe {

enum class Precision { f32, bf16 };

// What a training loop needs from a device beyond Backend's ops.
class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  virtual Backend& backend() = 0;
  // A copy in this device's memory / on the host.
  virtual Tensor upload(const Tensor& host) = 0;
  virtual Tensor download(const Tensor& t) = 0;
  // dst = src converted between f32 and bf16 (throws where unsupported).
  virtual void cast(const Tensor& src, const Tensor& dst) = 0;
  // Clips gradients to max_norm (when > 0; returns the norm before clipping, 0 when off) and applies one
  // optimizer update at lr, with the semantics of runtime/optim (clip_grad_norm, then Optimizer::step).
  virtual double clip_and_step(std::vector<Param*>& params, double max_norm, double lr) = 0;
  virtual void synchronize() {}
};

// CpuBackend with config.train.threads threads, optimizer from config.optim.
std::unique_ptr<DeviceOps> make_cpu_ops(const RunConfig& config);
// CudaBackend on cuda:device (built only with CUDA; elsewhere throws troupe::Error kConfig).
std::unique_ptr<DeviceOps> make_cuda_ops(const RunConfig& config, int device, bool allow_tf32);

struct GptStepResult {
  double loss = 0.0;       // mean per-token cross-entropy before the update
  double grad_norm = 0.0;  // before clipping (0 when train.grad_clip = 0)
  double lr = 0.0;
};

class DeviceGpt {
 public:
  // Parameters initialised exactly as the reference model (make_layer_specs with train.seed), uploaded.
  DeviceGpt(const RunConfig& config, DeviceOps& ops, Precision precision = Precision::f32);

  // One step on `batch` (inputs and targets i32 [B, T], on the host): forward, backward, clip, update.
  GptStepResult step(const Batch& batch, std::int64_t step_index);
  // Parameters in registration order (values and gradients on the device).
  std::vector<Param*> params();
  std::int64_t num_params() const { return num_params_; }

 private:
  struct Block {
    Param *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b, *fc_proj_w, *fc_proj_b;
    std::vector<Tensor> saved;
  };
  Tensor block_forward(Block& blk, const Tensor& x, std::int64_t b, std::int64_t t);
  Tensor block_backward(Block& blk, const Tensor& dy, std::int64_t b, std::int64_t t);
  void refresh_bf16_weights();
  Tensor linear(const Tensor& x, Param* w, Param* b, std::vector<Tensor>& saved);
  Tensor linear_back(const Tensor& dy, Param* w, Param* b, const Tensor& saved_x, bool want_dx);
  Param* p(const std::string& name);

  RunConfig config_;
  DeviceOps& ops_;
  Precision precision_;
  ParamSet params_;
  std::int64_t num_params_ = 0;
  std::vector<Block> blocks_;
  Param *wte_, *wpe_, *lnf_w_, *lnf_b_;
  Tensor wte_grad_head_;  // the LM head's share of wte's gradient, folded in after the embedding's
  Tensor position_ids_;   // i32 [B * T] on the device, for the batch size last seen
  std::map<const Param*, Tensor> w16_;  // bf16 copies of the linear weights (bf16 only)
};

// Model-FLOP utilisation as the issue defines it: 6 N tokens_per_s / peak_flops, N = every parameter
// (the 6 N training FLOPs per token of Kaplan et al.; attention's T-dependent FLOPs are not counted).
double model_flop_utilisation(std::int64_t n_params, double tokens_per_s, double peak_flops);
// vocab rounded up to a multiple of `multiple` (GPT-2's 50257 -> 50304 for 128).
std::int64_t padded_vocab(std::int64_t vocab, std::int64_t multiple);

}  // namespace troupe
