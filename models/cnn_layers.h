// Owns the residual CNN's layers (model.kind = cnn): stem, residual blocks and the pooled classifier head.
//
// The network, for 28x28 single-channel images given as rows of 784 pixels (Fashion-MNIST):
//   stem:      conv 3x3 (1 -> C0, padding 1, stride 1 or 2) -> BatchNorm -> ReLU
//   block i:   relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), both convs 3x3 with padding 1; conv1
//              has stride 2 in the first block of every stage after the first; the shortcut is the identity,
//              or conv 1x1 (same stride) -> BatchNorm when the shape changes (ResNet's option B)
//   head:      global average pooling -> Linear(C_last -> 10); then softmax cross-entropy
// Convolutions have no bias (a BatchNorm follows each). Parameter names are those of the torch modules:
//   stem.conv.weight [C0, 1, 3, 3], stem.bn.weight|bias [C0]
//   blocks.{i}.conv1.weight, blocks.{i}.bn1.*, blocks.{i}.conv2.weight, blocks.{i}.bn2.*,
//   blocks.{i}.shortcut.conv.weight [C, C_in, 1, 1], blocks.{i}.shortcut.bn.*     (i counts over all stages)
//   fc.weight [10, C_last], fc.bias [10]
// and every BatchNorm's running statistics are buffers (ParamSet::add_buffer): {bn}.running_mean and
// {bn}.running_var, saved in weight files, updated by training-mode forwards (MicroBatch::training),
// used by evaluation. torch's num_batches_tracked is not kept (it only matters for momentum = None).
#pragma once

#include "models/layer.h"

namespace troupe {

// torch.nn.Conv2d without bias: square kernel, equal stride and zero padding on both axes.
struct Conv2d {
  Conv2d(ParamSet& params, const std::string& name, int in, int out, int kernel, int stride, std::uint64_t seed);
  Tensor forward(Backend& be, const Tensor& x) const;             // x [N, in, H, W] -> [N, out, Ho, Wo]
  // Accumulates w's gradient; returns dx when want_dx.
  Tensor backward(Backend& be, const Tensor& dy, const Tensor& x, bool want_dx) const;
  double macs(int out_side) const { return static_cast<double>(w->value.numel()) * out_side * out_side; }

  Param* w;
  int stride, pad;
};

// torch.nn.BatchNorm2d (eps 1e-5, momentum 0.1, affine, tracking running statistics).
struct BatchNorm2d {
  static constexpr float kEps = 1e-5f;
  static constexpr float kMomentum = 0.1f;
  BatchNorm2d(ParamSet& params, const std::string& name, int channels);
  // Training: normalises by the batch statistics (written to mean, rstd [C] for backward) and updates the
  // running statistics; otherwise normalises by the running statistics (mean, rstd left undefined).
  // The statistics are the micro-batch's, or the whole batch's over mb.replica_sum (synchronised).
  Tensor forward(Backend& be, const MicroBatch& mb, const Tensor& x, Tensor& mean, Tensor& rstd) const;
  // Backward of a training-mode forward of x that saved mean and rstd; accumulates weight and bias grads.
  Tensor backward(Backend& be, const MicroBatch& mb, const Tensor& dy, const Tensor& x, const Tensor& mean,
                  const Tensor& rstd) const;

  Param *weight, *bias, *running_mean, *running_var;
};

struct CnnShape {
  std::vector<int> channels;  // per stage
  std::vector<int> blocks;    // per stage
  int classes = 10;
  int side = 28;              // input images are side x side, one channel
  int stem_stride = 1;        // 2: the stem halves the resolution
  // Resolution after the stem.
  int stem_side() const { return (side - 1) / stem_stride + 1; }
};

class CnnStem final : public Layer {
 public:
  CnnStem(ParamSet& params, const CnnShape& shape, std::uint64_t seed);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override;
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override;

 private:
  std::string name_ = "stem";
  int side_, out_side_;
  Conv2d conv_;
  BatchNorm2d bn_;
};

class ResidualBlock final : public Layer {
 public:
  // Block `index` (over all stages) from `in` to `out` channels at input resolution in_side x in_side.
  ResidualBlock(ParamSet& params, int index, int in, int out, int stride, int in_side, std::uint64_t seed);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override;
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override;

 private:
  std::string name_;
  int in_side_, out_side_;
  Conv2d conv1_, conv2_;
  BatchNorm2d bn1_, bn2_;
  std::unique_ptr<Conv2d> short_conv_;  // null: identity shortcut
  std::unique_ptr<BatchNorm2d> short_bn_;
};

class CnnHead final : public Layer {
 public:
  CnnHead(ParamSet& params, int channels, int classes, std::uint64_t seed);
  const std::string& name() const override { return name_; }
  std::vector<Param*> params() const override { return {w_, b_}; }
  Tensor forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) override;
  Tensor backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) override;
  double flops_per_row() const override { return 6.0 * channels_ * classes_; }

 private:
  std::string name_ = "fc";
  int channels_, classes_;
  Param *w_, *b_;
};

}  // namespace troupe
