// Owns DeviceGpt: GPT-2 training steps (llm.c style) over any Backend, with parameters in that backend's memory.
//
// The reference Trainer (models/) keeps parameters, the tied-head gradient and the optimizer on the host.
// DeviceGpt runs the same computation, op for op and in the same order, through a DeviceOps
// (runtime/device_ops.h): on the CPU it reproduces the reference trainer's losses and weights bit for
// bit, which tests this file without a GPU; on CUDA it is what `troupe train --set train.device=cuda`
// runs (models/device_trainer.h), what the [cuda] tests compare against the CPU, and what
// scripts/gpu-check times.
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
#include "runtime/device_ops.h"

namespace troupe {

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
  // Sum of the per-token losses of `batch` (forward only, nothing kept): evaluation.
  double loss_sum(const Batch& batch);
  // Parameters in registration order (values and gradients on the device).
  std::vector<Param*> params();
  std::int64_t num_params() const { return num_params_; }

 private:
  struct Block {
    Param *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b, *fc_proj_w, *fc_proj_b;
    std::vector<Tensor> saved;
  };
  // The forward pass up to the loss; keeps what backward needs in the blocks and in *head.
  struct Head {
    Tensor tokens, targets, x, h, mean, rstd, logits;
    std::vector<Tensor> saved;
  };
  double forward(const Batch& batch, Head* head);
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

}  // namespace troupe
