// Owns the MLP's layers: Dense (Linear, optionally followed by ReLU) and the softmax cross-entropy loss.
//
// Parameter names: layers.{k}.weight [out, in] and layers.{k}.bias [out] for the k-th Linear,
// as torch.nn.Sequential of Linear layers would name them when the ReLUs are left out of the count.
#pragma once

#include "models/loss_layer.h"
#include "runtime/comm/tensor_group.h"

namespace troupe {

// How a Dense layer is split over a tensor group: column-parallel (by outputs; its input gradient is a
// partial sum: f) or row-parallel (by inputs; its output is a partial sum: g, and its bias is added
// once), or whole on every shard. Dense layers pair up column- then row-parallel.
enum class DenseSplit { whole, column, row };

class DenseLayer final : public Layer {
 public:
  DenseLayer(ParamSet& params, int index, int in, int out, bool relu, std::uint64_t seed,
             comm::TensorGroup group = {}, DenseSplit split = DenseSplit::whole, int pieces = 1);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {w_, b_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override { return 6.0 * in_ * out_; }

 private:
  std::string name_;
  int in_, out_;
  bool relu_;
  bool first_;
  comm::TensorGroup group_;
  DenseSplit split_;  // how this shard's parameters are cut (whole when T = 1)
  DenseSplit role_;   // the layer's place in its column/row pair, whatever T: which sums deterministic mode makes exact
  int pieces_;        // exact pieces of those sums (models/tensor_parallel_linear.h); every valid T divides it
  Param *w_, *b_;
};

// Mean cross-entropy over the batch's rows; returns per-row losses.
class SoftmaxCrossEntropy final : public LossLayer {
 public:
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& logits) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override { return 0.0; }
  Tensor probabilities(const LayerCtx& ctx) const override { return ctx.saved.at(0); }

 private:
  std::string name_ = "loss";
};

}  // namespace troupe
