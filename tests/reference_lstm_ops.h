// Owns the tests' double-precision reference for the LSTM: the recurrence of one torch.nn.LSTM layer and the layer.
//
// Plain loops over row-major std::vector<double> (see tests/reference_ops.h for the conventions), written
// from torch.nn.LSTM's documented equations; independent of runtime/cpu.
#pragma once

#include <cmath>

#include "tests/reference_ops.h"

namespace troupe::ref {

// h[B, T, H] of the recurrence over xg[B, T, 4H] (the input projection, b_ih included) from zero state:
// z = xg_t + W_hh h_{t-1} + b_hh, gates i, f, g, o; c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
inline Vec lstm_recurrence(const Vec& xg, const Vec& w_hh, const Vec& b_hh, std::int64_t B, std::int64_t T,
                           std::int64_t H) {
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  Vec h(B * T * H);
  for (std::int64_t b = 0; b < B; ++b) {
    Vec hp(H, 0.0), cp(H, 0.0);
    for (std::int64_t t = 0; t < T; ++t) {
      const double* x = &xg[(b * T + t) * 4 * H];
      Vec hn(H), cn(H);
      for (std::int64_t j = 0; j < H; ++j) {
        double z[4];
        for (int k = 0; k < 4; ++k) {
          double s = x[k * H + j] + b_hh[k * H + j];
          for (std::int64_t m = 0; m < H; ++m) s += w_hh[(k * H + j) * H + m] * hp[m];
          z[k] = s;
        }
        const double i = sig(z[0]), f = sig(z[1]), g = std::tanh(z[2]), o = sig(z[3]);
        cn[j] = f * cp[j] + i * g;
        hn[j] = o * std::tanh(cn[j]);
        h[(b * T + t) * H + j] = hn[j];
      }
      hp = hn;
      cp = cn;
    }
  }
  return h;
}

// One torch.nn.LSTM layer over x[B, T, In].
inline Vec lstm_layer(const Vec& x, const Vec& w_ih, const Vec& w_hh, const Vec& b_ih, const Vec& b_hh,
                      std::int64_t B, std::int64_t T, std::int64_t in, std::int64_t H) {
  return lstm_recurrence(linear(x, w_ih, b_ih, B * T, in, 4 * H), w_hh, b_hh, B, T, H);
}

}  // namespace troupe::ref
