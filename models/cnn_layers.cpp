// The residual CNN's layers: convolution and batch-norm modules, stem, residual block, pooled head.
#include "models/cnn_layers.h"

#include <cmath>

#include "models/init.h"

namespace troupe {

namespace {
std::int64_t out_side(std::int64_t side, int stride) { return (side - 1) / stride + 1; }  // 3x3 pad 1, or 1x1 pad 0

void check_input(const std::string& layer, const Tensor& x, std::int64_t channels, std::int64_t side) {
  if (x.ndim() != 4 || x.dim(1) != channels || x.dim(2) != side || x.dim(3) != side)
    throw Error(ErrorKind::kShape, layer + ": expected activations [N, " + std::to_string(channels) + ", " +
                                       std::to_string(side) + ", " + std::to_string(side) + "], got " +
                                       shape_str(x.shape()));
}
}  // namespace

Conv2d::Conv2d(ParamSet& params, const std::string& name, int in, int out, int kernel, int stride_,
               std::uint64_t seed)
    : w(&params.add(name + ".weight", {out, in, kernel, kernel})), stride(stride_), pad(kernel / 2) {
  // torchvision's ResNet: kaiming_normal_(mode="fan_out", nonlinearity="relu").
  init_normal(w->value, seed, w->name, std::sqrt(2.0 / (static_cast<double>(out) * kernel * kernel)));
}

Tensor Conv2d::forward(Backend& be, const Tensor& x) const {
  const std::int64_t k = w->value.dim(2);
  const std::int64_t ho = (x.dim(2) + 2 * pad - k) / stride + 1, wo = (x.dim(3) + 2 * pad - k) / stride + 1;
  Tensor y = be.empty({x.dim(0), w->value.dim(0), ho, wo});
  be.conv2d_forward(x, w->value, Tensor(), y, stride, pad);
  return y;
}

Tensor Conv2d::backward(Backend& be, const Tensor& dy, const Tensor& x, bool want_dx) const {
  Tensor dx = want_dx ? be.empty(x.shape()) : Tensor();
  be.conv2d_backward(dy, x, w->value, dx, w->grad, Tensor(), stride, pad);
  return dx;
}

BatchNorm2d::BatchNorm2d(ParamSet& params, const std::string& name, int channels)
    : weight(&params.add(name + ".weight", {channels})),
      bias(&params.add(name + ".bias", {channels})),
      running_mean(&params.add_buffer(name + ".running_mean", {channels})),
      running_var(&params.add_buffer(name + ".running_var", {channels})) {
  init_constant(weight->value, 1.0f);
  init_constant(bias->value, 0.0f);
  init_constant(running_mean->value, 0.0f);
  init_constant(running_var->value, 1.0f);
}

Tensor BatchNorm2d::forward(Backend& be, const MicroBatch& mb, const Tensor& x, Tensor& mean, Tensor& rstd) const {
  const bool training = mb.training;
  const std::int64_t c = weight->value.numel();
  Tensor y = be.empty(x.shape());
  mean = training ? be.empty({c}) : Tensor();
  rstd = training ? be.empty({c}) : Tensor();
  be.batchnorm_forward(x, weight->value, bias->value, running_mean->value, running_var->value, training, kMomentum,
                       kEps, y, mean, rstd, training ? mb.replica_sum : nullptr);
  return y;
}

Tensor BatchNorm2d::backward(Backend& be, const MicroBatch& mb, const Tensor& dy, const Tensor& x,
                             const Tensor& mean, const Tensor& rstd) const {
  Tensor dx = be.empty(x.shape());
  be.batchnorm_backward(dy, x, weight->value, mean, rstd, dx, weight->grad, bias->grad, mb.replica_sum);
  return dx;
}

// ---- stem

CnnStem::CnnStem(ParamSet& params, const CnnShape& shape, std::uint64_t seed)
    : side_(shape.side),
      out_side_(shape.stem_side()),
      conv_(params, "stem.conv", 1, shape.channels.at(0), 3, shape.stem_stride, seed),
      bn_(params, "stem.bn", shape.channels.at(0)) {}

std::vector<Param*> CnnStem::params() const { return {conv_.w, bn_.weight, bn_.bias}; }

double CnnStem::flops_per_row() const { return 6.0 * conv_.macs(out_side_); }

Tensor CnnStem::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  const std::int64_t rows = x.dim(0);
  if (x.numel() != rows * side_ * side_)
    throw Error(ErrorKind::kShape, "stem: expected images of " + std::to_string(side_ * side_) + " pixels, got " +
                                       shape_str(x.shape()));
  const Tensor image = x.view({rows, 1, side_, side_});
  Tensor a = conv_.forward(be, image);  // [N, C0, stem side, stem side]
  Tensor mean, rstd;
  Tensor y = bn_.forward(be, mb, a, mean, rstd);
  be.relu_forward(y, y);
  if (mb.training) ctx.saved = {image, a, mean, rstd, y};
  return y;
}

Tensor CnnStem::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  TROUPE_CHECK(ctx.saved.size() == 5, "stem backward without a training-mode forward");
  const Tensor &image = ctx.saved[0], &a = ctx.saved[1], &y = ctx.saved[4];
  Tensor g = be.empty(dy.shape());
  be.relu_backward(y, dy, g);
  Tensor da = bn_.backward(be, mb, g, a, ctx.saved[2], ctx.saved[3]);
  conv_.backward(be, da, image, false);  // the first layer: no gradient for the pixels
  ctx.clear();
  return Tensor();
}

// ---- residual block

ResidualBlock::ResidualBlock(ParamSet& params, int index, int in, int out, int stride, int in_side,
                             std::uint64_t seed)
    : name_("blocks." + std::to_string(index)),
      in_side_(in_side),
      out_side_(static_cast<int>(out_side(in_side, stride))),
      conv1_(params, name_ + ".conv1", in, out, 3, stride, seed),
      conv2_(params, name_ + ".conv2", out, out, 3, 1, seed),
      bn1_(params, name_ + ".bn1", out),
      bn2_(params, name_ + ".bn2", out) {
  if (stride != 1 || in != out) {
    short_conv_ = std::make_unique<Conv2d>(params, name_ + ".shortcut.conv", in, out, 1, stride, seed);
    short_bn_ = std::make_unique<BatchNorm2d>(params, name_ + ".shortcut.bn", out);
  }
}

std::vector<Param*> ResidualBlock::params() const {
  std::vector<Param*> out = {conv1_.w, bn1_.weight, bn1_.bias, conv2_.w, bn2_.weight, bn2_.bias};
  if (short_conv_) out.insert(out.end(), {short_conv_->w, short_bn_->weight, short_bn_->bias});
  return out;
}

double ResidualBlock::flops_per_row() const {
  double macs = conv1_.macs(out_side_) + conv2_.macs(out_side_);
  if (short_conv_) macs += short_conv_->macs(out_side_);
  return 6.0 * macs;
}

// ctx.saved: x, a1 (conv1 out), mean1, rstd1, h (relu(bn1)), a2 (conv2 out), mean2, rstd2, y,
//            then with a projection shortcut: s (its conv out), mean_s, rstd_s.
Tensor ResidualBlock::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  check_input(name_, x, conv1_.w->value.dim(1), in_side_);
  Tensor a1 = conv1_.forward(be, x);
  Tensor mean1, rstd1, mean2, rstd2;
  Tensor h = bn1_.forward(be, mb, a1, mean1, rstd1);
  be.relu_forward(h, h);
  Tensor a2 = conv2_.forward(be, h);
  Tensor y = bn2_.forward(be, mb, a2, mean2, rstd2);
  Tensor s, mean_s, rstd_s;
  if (short_conv_) {
    s = short_conv_->forward(be, x);
    be.add_inplace(y, short_bn_->forward(be, mb, s, mean_s, rstd_s));
  } else {
    be.add_inplace(y, x);
  }
  be.relu_forward(y, y);
  if (mb.training) {
    ctx.saved = {x, a1, mean1, rstd1, h, a2, mean2, rstd2, y};
    if (short_conv_) ctx.saved.insert(ctx.saved.end(), {s, mean_s, rstd_s});
  }
  return y;
}

Tensor ResidualBlock::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  TROUPE_CHECK(ctx.saved.size() == (short_conv_ ? 12u : 9u), name_, " backward without a training-mode forward");
  const auto& v = ctx.saved;
  const Tensor &x = v[0], &a1 = v[1], &h = v[4], &a2 = v[5], &y = v[8];
  Tensor g = be.empty(dy.shape());
  be.relu_backward(y, dy, g);  // gradient of the sum: flows into both branches
  Tensor dh = conv2_.backward(be, bn2_.backward(be, mb, g, a2, v[6], v[7]), h, true);
  be.relu_backward(h, dh, dh);
  Tensor dx = conv1_.backward(be, bn1_.backward(be, mb, dh, a1, v[2], v[3]), x, true);
  if (short_conv_)
    be.add_inplace(dx, short_conv_->backward(be, short_bn_->backward(be, mb, g, v[9], v[10], v[11]), x, true));
  else
    be.add_inplace(dx, g);
  ctx.clear();
  return dx;
}

// ---- head

CnnHead::CnnHead(ParamSet& params, int channels, int classes, std::uint64_t seed)
    : channels_(channels), classes_(classes) {
  w_ = &params.add("fc.weight", {classes, channels});
  b_ = &params.add("fc.bias", {classes});
  // torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(channels));
  init_uniform(w_->value, seed, w_->name, bound);
  init_uniform(b_->value, seed, b_->name, bound);
}

Tensor CnnHead::forward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& x) {
  if (x.ndim() != 4 || x.dim(1) != channels_)
    throw Error(ErrorKind::kShape, "fc: expected activations [N, " + std::to_string(channels_) + ", H, W], got " +
                                       shape_str(x.shape()));
  const std::int64_t rows = x.dim(0);
  Tensor pooled = be.empty({rows, channels_});
  be.avgpool_forward(x, pooled);
  Tensor logits = be.empty({rows, classes_});
  be.linear_forward(pooled, w_->value, b_->value, logits, mb.row_block);
  if (mb.training) ctx.saved = {x, pooled};
  return logits;
}

Tensor CnnHead::backward(Backend& be, const MicroBatch& mb, LayerCtx& ctx, const Tensor& dy) {
  TROUPE_CHECK(ctx.saved.size() == 2, "fc backward without a training-mode forward");
  const Tensor &x = ctx.saved[0], &pooled = ctx.saved[1];
  Tensor dpooled = be.empty(pooled.shape());
  be.linear_backward(dy, pooled, w_->value, dpooled, w_->grad, b_->grad, mb.row_block);
  Tensor dx = be.empty(x.shape());
  be.avgpool_backward(dpooled, dx);
  ctx.clear();
  return dx;
}

}  // namespace troupe
