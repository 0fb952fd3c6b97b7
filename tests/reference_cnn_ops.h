// Owns the tests' double-precision reference for the CNN: convolution, batch norm, pooling and the residual CNN's layers.
//
// Plain loops over row-major NCHW std::vector<double> (see tests/reference_ops.h for the conventions);
// independent of runtime/cpu: no im2col, no BLAS.
#pragma once

#include "tests/reference_ops.h"

namespace troupe::ref {

struct ConvGeom {
  std::int64_t n, c, h, w, o, k, stride, pad;
  std::int64_t ho() const { return (h + 2 * pad - k) / stride + 1; }
  std::int64_t wo() const { return (w + 2 * pad - k) / stride + 1; }
};

// torch.nn.Conv2d: y[n, o, i, j] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] x[n, c, i s - p + ky, j s - p + kx].
inline Vec conv2d(const Vec& x, const Vec& w, const Vec& b, const ConvGeom& g) {
  Vec y(g.n * g.o * g.ho() * g.wo());
  for (std::int64_t n = 0; n < g.n; ++n)
    for (std::int64_t o = 0; o < g.o; ++o)
      for (std::int64_t i = 0; i < g.ho(); ++i)
        for (std::int64_t j = 0; j < g.wo(); ++j) {
          double s = b.empty() ? 0.0 : b[o];
          for (std::int64_t c = 0; c < g.c; ++c)
            for (std::int64_t ky = 0; ky < g.k; ++ky)
              for (std::int64_t kx = 0; kx < g.k; ++kx) {
                const std::int64_t iy = i * g.stride - g.pad + ky, ix = j * g.stride - g.pad + kx;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                s += w[((o * g.c + c) * g.k + ky) * g.k + kx] * x[((n * g.c + c) * g.h + iy) * g.w + ix];
              }
          y[((n * g.o + o) * g.ho() + i) * g.wo() + j] = s;
        }
  return y;
}

struct BnOut {
  Vec y, mean, var;  // var: biased (the one that normalises)
};

// Training-mode batch norm over x[n, c, s]: per channel mean and biased variance over n and s.
inline BnOut batchnorm_train(const Vec& x, const Vec& gamma, const Vec& beta, std::int64_t n, std::int64_t c,
                             std::int64_t s, double eps = 1e-5) {
  BnOut out{Vec(x.size()), Vec(c), Vec(c)};
  for (std::int64_t ch = 0; ch < c; ++ch) {
    double sum = 0.0, sq = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t p = 0; p < s; ++p) sum += x[(i * c + ch) * s + p];
    const double m = sum / static_cast<double>(n * s);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t p = 0; p < s; ++p) sq += (x[(i * c + ch) * s + p] - m) * (x[(i * c + ch) * s + p] - m);
    const double var = sq / static_cast<double>(n * s);
    out.mean[ch] = m;
    out.var[ch] = var;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t p = 0; p < s; ++p) {
        const std::int64_t at = (i * c + ch) * s + p;
        out.y[at] = gamma[ch] * (x[at] - m) / std::sqrt(var + eps) + beta[ch];
      }
  }
  return out;
}

// Evaluation-mode batch norm: the given running statistics.
inline Vec batchnorm_eval(const Vec& x, const Vec& gamma, const Vec& beta, const Vec& mean, const Vec& var,
                          std::int64_t n, std::int64_t c, std::int64_t s, double eps = 1e-5) {
  Vec y(x.size());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t p = 0; p < s; ++p) {
        const std::int64_t at = (i * c + ch) * s + p;
        y[at] = gamma[ch] * (x[at] - mean[ch]) / std::sqrt(var[ch] + eps) + beta[ch];
      }
  return y;
}

// y[n, c] = mean over s of x[n, c, s].
inline Vec avgpool(const Vec& x, std::int64_t n, std::int64_t c, std::int64_t s) {
  Vec y(n * c, 0.0);
  for (std::int64_t r = 0; r < n * c; ++r) {
    for (std::int64_t p = 0; p < s; ++p) y[r] += x[r * s + p];
    y[r] /= static_cast<double>(s);
  }
  return y;
}

// ---- the residual CNN's layers (models/cnn_layers.h), training mode --------------------------------------

struct BnParams {
  Vec gamma, beta;
};

// conv (no bias) -> training-mode batch norm, at resolution side x side with the given stride.
inline Vec conv_bn(const Vec& x, const Vec& w, const BnParams& bn, std::int64_t n, std::int64_t c, std::int64_t o,
                   std::int64_t side, std::int64_t k, std::int64_t stride) {
  const ConvGeom g{n, c, side, side, o, k, stride, k / 2};
  return batchnorm_train(conv2d(x, w, {}, g), bn.gamma, bn.beta, n, o, g.ho() * g.wo()).y;
}

// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); shortcut = conv 1x1 -> bn when sw is non-empty.
inline Vec residual_block(const Vec& x, const Vec& w1, const BnParams& bn1, const Vec& w2, const BnParams& bn2,
                          const Vec& sw, const BnParams& sbn, std::int64_t n, std::int64_t c, std::int64_t o,
                          std::int64_t side, std::int64_t stride) {
  const std::int64_t out_side = (side - 1) / stride + 1;
  const Vec h = relu(conv_bn(x, w1, bn1, n, c, o, side, 3, stride));
  Vec y = conv_bn(h, w2, bn2, n, o, o, out_side, 3, 1);
  const Vec s = sw.empty() ? x : conv_bn(x, sw, sbn, n, c, o, side, 1, stride);
  return relu(add(y, s));
}

}  // namespace troupe::ref
