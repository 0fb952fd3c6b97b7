// Owns the tests' double-precision reference: plain-loop forwards of every backend op and GPT/MLP layer, plus finite differences.
//
// Independent of runtime/cpu on purpose: no BLAS, no fast exp, no shared helpers. Every function takes
// and returns row-major std::vector<double>; shapes are passed explicitly. Gradient checks perturb
// these vectors and differentiate a scalar numerically (central differences, in double).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace troupe::ref {

using Vec = std::vector<double>;
using Ids = std::vector<std::int32_t>;

// ---- conversions and random data ------------------------------------------------------------------

inline Vec to_vec(const Tensor& t) {
  Vec v;
  for (float f : t.to_vector()) v.push_back(f);
  return v;
}

// f32 tensor holding v rounded to float (callers keep v exactly float-representable).
inline Tensor to_tensor(const Shape& shape, const Vec& v) {
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_f32(shape, f);
}

// Values uniform in [lo, hi], rounded to float so that f32 tensors and the double reference see the same numbers.
inline Vec random_vec(std::mt19937_64& rng, std::size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  Vec v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

// Like random_vec, but every |value| >= margin (away from ReLU's kink and from zero).
inline Vec random_nonzero(std::mt19937_64& rng, std::size_t n, double lo, double hi, double margin) {
  Vec v = random_vec(rng, n, lo, hi);
  for (auto& x : v)
    if (std::abs(x) < margin) x = static_cast<float>(x < 0 ? -margin - std::abs(x) : margin + std::abs(x));
  return v;
}

inline Ids random_ids(std::mt19937_64& rng, std::size_t n, int hi) {
  std::uniform_int_distribution<int> d(0, hi - 1);
  Ids v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline Vec scaled(const Vec& v, double s) {
  Vec out(v);
  for (auto& x : out) x *= s;
  return out;
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

inline double sum(const Vec& a) {
  double s = 0.0;
  for (double x : a) s += x;
  return s;
}

// ---- comparison --------------------------------------------------------------------------------------

// max|got - want| / max(max|want|, floor): an error relative to the tensor's scale.
inline double rel_err(const Vec& got, const Vec& want, double floor = 1e-3) {
  if (got.size() != want.size()) return INFINITY;
  double num = 0.0, den = floor;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(got[i] - want[i]);
    num = std::isnan(d) ? INFINITY : std::max(num, d);
    den = std::max(den, std::abs(want[i]));
  }
  return num / den;
}

// Central differences of f with respect to every entry of v (perturbed in place and restored).
inline Vec numeric_grad(const std::function<double()>& f, Vec& v, double h = 1e-5) {
  Vec g(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = f();
    v[i] = keep - h;
    const double down = f();
    v[i] = keep;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

// ---- backend ops ---------------------------------------------------------------------------------------

// y[n, out] = x[n, in] . w[out, in] (+ b[out] when b is non-empty).
inline Vec linear(const Vec& x, const Vec& w, const Vec& b, std::int64_t n, std::int64_t in, std::int64_t out) {
  Vec y(n * out);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[o];
      for (std::int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

// c[m, n] = op(a) . op(b), op(a)[i, p] = trans_a ? a[p, i] : a[i, p] (a stored [k, m] or [m, k]).
inline Vec matmul(const Vec& a, bool trans_a, const Vec& b, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k) {
  Vec c(m * n, 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::int64_t p = 0; p < k; ++p) s += (trans_a ? a[p * m + i] : a[i * k + p]) * (trans_b ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  return c;
}

inline Vec gelu(const Vec& x) {
  const double k = std::sqrt(2.0 / std::numbers::pi);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = 0.5 * x[i] * (1.0 + std::tanh(k * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
  return y;
}

inline Vec relu(const Vec& x) {
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] > 0.0 ? x[i] : 0.0;
  return y;
}

inline Vec softmax(const Vec& x, std::int64_t n, std::int64_t c) {
  Vec y(x.size());
  for (std::int64_t r = 0; r < n; ++r) {
    double mx = x[r * c];
    for (std::int64_t j = 1; j < c; ++j) mx = std::max(mx, x[r * c + j]);
    double s = 0.0;
    for (std::int64_t j = 0; j < c; ++j) s += y[r * c + j] = std::exp(x[r * c + j] - mx);
    for (std::int64_t j = 0; j < c; ++j) y[r * c + j] /= s;
  }
  return y;
}

struct LnOut {
  Vec y, mean, rstd;
};

inline LnOut layernorm(const Vec& x, const Vec& w, const Vec& b, std::int64_t n, std::int64_t c, double eps = 1e-5) {
  LnOut o{Vec(x.size()), Vec(n), Vec(n)};
  for (std::int64_t r = 0; r < n; ++r) {
    double m = 0.0;
    for (std::int64_t j = 0; j < c; ++j) m += x[r * c + j];
    m /= c;
    double var = 0.0;
    for (std::int64_t j = 0; j < c; ++j) var += (x[r * c + j] - m) * (x[r * c + j] - m);
    var /= c;
    const double s = 1.0 / std::sqrt(var + eps);
    for (std::int64_t j = 0; j < c; ++j) o.y[r * c + j] = (x[r * c + j] - m) * s * w[j] + b[j];
    o.mean[r] = m;
    o.rstd[r] = s;
  }
  return o;
}

inline Vec embedding(const Ids& ids, const Vec& table, std::int64_t c) {
  Vec y(ids.size() * c);
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (std::int64_t j = 0; j < c; ++j) y[i * c + j] = table[ids[i] * c + j];
  return y;
}

struct AttnOut {
  Vec out;    // [B, T, C]
  Vec probs;  // [B, H, T, T], zero above the diagonal
};

// Causal self-attention over qkv[B, T, 3C] (q, k, v blocks of C, each split into H heads of C/H).
inline AttnOut attention(const Vec& qkv, std::int64_t B, std::int64_t T, std::int64_t C, std::int64_t H) {
  const std::int64_t hd = C / H;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  AttnOut o{Vec(B * T * C, 0.0), Vec(B * H * T * T, 0.0)};
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t t = 0; t < T; ++t) {
        const double* q = &qkv[(b * T + t) * 3 * C + h * hd];
        double* p = &o.probs[((b * H + h) * T + t) * T];
        double mx = -INFINITY;
        for (std::int64_t s = 0; s <= t; ++s) {
          const double* k = &qkv[(b * T + s) * 3 * C + C + h * hd];
          double d = 0.0;
          for (std::int64_t e = 0; e < hd; ++e) d += q[e] * k[e];
          p[s] = d * scale;
          mx = std::max(mx, p[s]);
        }
        double z = 0.0;
        for (std::int64_t s = 0; s <= t; ++s) z += p[s] = std::exp(p[s] - mx);
        for (std::int64_t s = 0; s <= t; ++s) p[s] /= z;
        for (std::int64_t e = 0; e < hd; ++e) {
          double acc = 0.0;
          for (std::int64_t s = 0; s <= t; ++s) acc += p[s] * qkv[(b * T + s) * 3 * C + 2 * C + h * hd + e];
          o.out[(b * T + t) * C + h * hd + e] = acc;
        }
      }
  return o;
}

// Per-row -log softmax(logits)[target].
inline Vec cross_entropy(const Vec& logits, const Ids& targets, std::int64_t n, std::int64_t v) {
  Vec losses(n);
  for (std::int64_t r = 0; r < n; ++r) {
    double mx = logits[r * v];
    for (std::int64_t j = 1; j < v; ++j) mx = std::max(mx, logits[r * v + j]);
    double z = 0.0;
    for (std::int64_t j = 0; j < v; ++j) z += std::exp(logits[r * v + j] - mx);
    losses[r] = std::log(z) + mx - logits[r * v + targets[r]];
  }
  return losses;
}

inline Vec add(const Vec& a, const Vec& b) {
  Vec o(a);
  for (std::size_t i = 0; i < o.size(); ++i) o[i] += b[i];
  return o;
}

// ---- GPT-2 and MLP layers --------------------------------------------------------------------------

// x[b, t] = wte[tokens[b, t]] + wpe[t].
inline Vec gpt_embedding(const Ids& tokens, const Vec& wte, const Vec& wpe, std::int64_t B, std::int64_t T, std::int64_t C) {
  Vec y(B * T * C);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < C; ++j) y[(b * T + t) * C + j] = wte[tokens[b * T + t] * C + j] + wpe[t * C + j];
  return y;
}

// A GPT-2 block's parameters, named after nanoGPT (shapes for C = n_embd).
struct BlockParams {
  Vec ln1_w, ln1_b;    // [C]
  Vec attn_w, attn_b;  // [3C, C], [3C]
  Vec proj_w, proj_b;  // [C, C], [C]
  Vec ln2_w, ln2_b;    // [C]
  Vec fc_w, fc_b;      // [4C, C], [4C]
  Vec fcp_w, fcp_b;    // [C, 4C], [C]
};

// y = x_mid + c_proj(gelu(c_fc(ln_2(x_mid)))), x_mid = x + c_proj(attn(c_attn(ln_1(x)))).
inline Vec gpt_block(const Vec& x, const BlockParams& p, std::int64_t B, std::int64_t T, std::int64_t C, std::int64_t H) {
  const std::int64_t n = B * T;
  const Vec ln1 = layernorm(x, p.ln1_w, p.ln1_b, n, C).y;
  const Vec qkv = linear(ln1, p.attn_w, p.attn_b, n, C, 3 * C);
  const Vec a = attention(qkv, B, T, C, H).out;
  const Vec mid = add(x, linear(a, p.proj_w, p.proj_b, n, C, C));
  const Vec ln2 = layernorm(mid, p.ln2_w, p.ln2_b, n, C).y;
  const Vec g = gelu(linear(ln2, p.fc_w, p.fc_b, n, C, 4 * C));
  return add(mid, linear(g, p.fcp_w, p.fcp_b, n, 4 * C, C));
}

// Per-token losses of ln_f(x) . wte^T against targets.
inline Vec gpt_head(const Vec& x, const Vec& lnf_w, const Vec& lnf_b, const Vec& wte, const Ids& targets, std::int64_t n,
                    std::int64_t C, std::int64_t V) {
  const Vec h = layernorm(x, lnf_w, lnf_b, n, C).y;
  return cross_entropy(linear(h, wte, Vec(), n, C, V), targets, n, V);
}

// Linear, then ReLU when relu is set.
inline Vec dense(const Vec& x, const Vec& w, const Vec& b, std::int64_t n, std::int64_t in, std::int64_t out, bool relu_on) {
  Vec y = linear(x, w, b, n, in, out);
  return relu_on ? relu(y) : y;
}

}  // namespace troupe::ref
