// Owns the Layer interface: explicit forward/backward over one micro-batch, activations kept in a LayerCtx.
//
// A model is a sequence of layers; a pipeline stage is a contiguous range of them. Each layer call
// gets the micro-batch it works on and a LayerCtx holding that micro-batch's saved activations, so
// several micro-batches can be in flight through one layer at once (GPipe, 1F1B).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/param.h"

namespace troupe {

// What every layer may need to know about the micro-batch besides its input activation.
struct MicroBatch {
  Tensor inputs;              // token ids i32 [B, T] (gpt) or features f32 [B, D] (mlp)
  Tensor targets;             // i32 [B, T] or [B]
  float loss_scale = 1.0f;    // 1 / (loss terms in the whole batch): micro-batch grads sum to the batch mean
  std::int64_t row_block = 1; // rows per sample: the unit of ordered gradient reduction
  bool training = true;       // false for evaluation: batch norm uses its running statistics, nothing is saved
  // Synchronised batch norm (model.sync_batchnorm): batch statistics summed over the data-parallel
  // replicas of this stage; null: each replica normalises by its own share (as PyTorch DDP).
  ReplicaSum* replica_sum = nullptr;
};

// Saved activations of one layer for one micro-batch; released after that micro-batch's backward.
struct LayerCtx {
  std::vector<Tensor> saved;
  void clear() { saved.clear(); }
};

// A weight a layer uses but another layer owns (a tied weight: GPT's LM head uses the token
// embedding's). When the owner sits on another pipeline stage, the user holds a replica of it: the
// pipeline ships the user's gradient share to the owner and the updated value back (StageWorker).
struct TiedUse {
  Param* weight = nullptr;        // the owner's parameter, or this layer's replica of it; null: none
  const Tensor* grad = nullptr;   // this layer's share of the owner's gradient
  bool replica = false;           // `weight` is a replica (the owner is on another stage)
};

class Layer {
 public:
  virtual ~Layer() = default;
  // "transformer.h.3", "transformer.wte+wpe", "lm_head": for partitions, traces and errors.
  virtual const std::string& name() const = 0;
  // The parameters this layer owns (as registered in its ParamSet), in registration order.
  virtual std::vector<Param*> params() const = 0;
  // Forward: consumes x (the previous layer's output, or mb.inputs for the first layer) and returns y.
  // A loss layer returns per-row losses [rows].
  virtual Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) = 0;
  // Backward: consumes dy (undefined for a loss layer), accumulates parameter gradients, returns dx
  // (undefined for the first layer).
  virtual Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) = 0;
  // Estimated floating-point operations per sample row (token) for forward + backward: partitioning cost.
  virtual double flops_per_row() const = 0;
  // Gradient buffers a layer keeps outside its ParamSet (a tied weight used on another stage): reset and
  // fold into the owning parameter's gradient before the optimizer step.
  virtual void zero_extra_grads() {}
  virtual void fold_extra_grads() {}
  // Those buffers, for whoever must reduce or flush every gradient (data parallelism, exact sums).
  virtual std::vector<Tensor> extra_grads() const { return {}; }
  // The tied weight this layer uses, if any (see TiedUse).
  virtual TiedUse tied_use() { return {}; }
};

}  // namespace troupe
