// ClickLog: hashed per-sample random streams, Zipf inversion and the hidden logistic model.
#include "runtime/data/click_log.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/splitmix64.h"

namespace troupe {

namespace {

std::uint64_t mix(std::uint64_t z) { return splitmix64_mix(z); }

std::uint64_t hash(std::uint64_t a, std::uint64_t b, std::uint64_t c = 0, std::uint64_t d = 0) {
  return mix(mix(mix(mix(a + 0x9E3779B97F4A7C15ull) ^ b) ^ c) ^ d);
}

// Uniform in (0, 1) from 53 bits.
double uniform(std::uint64_t h) { return (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53; }

// A standard normal from one hash (Box-Muller on its two 32-bit halves is too coarse: use two hashes).
double normal(std::uint64_t h) {
  const double u1 = uniform(h), u2 = uniform(mix(h ^ 0xD1B54A32D192ED03ull));
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// A sequential stream for one sample.
struct Stream {
  std::uint64_t state;
  std::uint64_t next() { return splitmix64_next(state); }
};

std::int64_t zipf_id(double u, std::int64_t n, double a) {
  const double np1 = static_cast<double>(n) + 1.0;
  double x;
  if (std::abs(a - 1.0) < 1e-9) {
    x = std::pow(np1, u);
  } else {
    const double e = 1.0 - a;
    x = std::pow(1.0 + u * (std::pow(np1, e) - 1.0), 1.0 / e);
  }
  const std::int64_t id = static_cast<std::int64_t>(std::floor(x)) - 1;
  return std::clamp<std::int64_t>(id, 0, n - 1);
}

}  // namespace

ClickBatch ClickBatch::slice(std::int64_t begin, std::int64_t end) const {
  return {categorical.slice(begin, end), dense.slice(begin, end), labels.slice(begin, end), truth.slice(begin, end)};
}

ClickLog::ClickLog(ClickLogOptions o) : options_(std::move(o)) {
  auto bad = [](const std::string& what) { throw Error(ErrorKind::kConfig, "click log: " + what); };
  if (options_.cardinalities.empty()) bad("needs at least one categorical field");
  for (std::size_t f = 0; f < options_.cardinalities.size(); ++f)
    if (options_.cardinalities[f] < 1 || options_.cardinalities[f] > 0x7FFFFFFF)
      bad(fmt::format("field {} has cardinality {}: must be in [1, 2^31 - 1]", f, options_.cardinalities[f]));
  if (options_.dense_features < 0) bad(fmt::format("dense_features = {}: must be >= 0", options_.dense_features));
  if (!(options_.zipf > 0)) bad(fmt::format("zipf = {}: the exponent must be > 0", options_.zipf));
  if (options_.train_samples < 1 || options_.test_samples < 1)
    bad(fmt::format("train_samples = {}, test_samples = {}: both must be >= 1", options_.train_samples, options_.test_samples));
  if (options_.truth_dim < 1) bad(fmt::format("truth_dim = {}: must be >= 1", options_.truth_dim));
  for (int j = 0; j < options_.dense_features; ++j) dense_weights_.push_back(normal(hash(options_.seed, 0xDE45E, j)));
}

void ClickLog::generate(int split, std::int64_t index, const ClickBatch& out, std::int64_t r) const {
  const ClickLogOptions& o = options_;
  const int F = fields(), D = o.dense_features;
  Stream s{hash(o.seed, 0x5A3B1E + split, static_cast<std::uint64_t>(index))};
  std::int32_t* ids = out.categorical.i32() + r * F;
  float* x = out.dense.f32() + r * D;
  for (int f = 0; f < F; ++f) ids[f] = static_cast<std::int32_t>(zipf_id(uniform(s.next()), o.cardinalities[f], o.zipf));
  double z = o.bias;
  for (int j = 0; j < D; ++j) {
    x[j] = static_cast<float>(normal(s.next()));
    z += o.dense_scale * dense_weights_[static_cast<std::size_t>(j)] * x[j];
  }
  for (int f = 0; f < F; ++f) z += o.id_scale * normal(hash(o.seed, 0x1D0000 + f, static_cast<std::uint64_t>(ids[f])));
  const double inv = 1.0 / std::sqrt(static_cast<double>(o.truth_dim));
  for (int f = 0; f + 1 < F; ++f) {
    double dot = 0.0;
    for (int k = 0; k < o.truth_dim; ++k)
      dot += normal(hash(o.seed, 0xE0000 + f, static_cast<std::uint64_t>(ids[f]), 2 * k + 1)) *
             normal(hash(o.seed, 0xE0000 + f + 1, static_cast<std::uint64_t>(ids[f + 1]), 2 * k + 2));
    z += o.cross_scale * dot * inv;
  }
  const double p = 1.0 / (1.0 + std::exp(-z));
  out.truth.f32()[r] = static_cast<float>(p);
  out.labels.f32()[r] = uniform(s.next()) < p ? 1.0f : 0.0f;
}

namespace {
ClickBatch make_batch(std::int64_t n, int fields, int dense) {
  return {Tensor::empty({n, fields}, DType::i32), Tensor::empty({n, dense}), Tensor::empty({n}), Tensor::empty({n})};
}
}  // namespace

ClickBatch ClickLog::train_batch(std::int64_t step, int batch_size) const { return train_slice(step, batch_size, 0, batch_size); }

ClickBatch ClickLog::train_slice(std::int64_t step, int batch_size, std::int64_t begin, std::int64_t end) const {
  TROUPE_CHECK(step >= 0 && batch_size >= 0 && 0 <= begin && begin <= end && end <= batch_size, "train batch ", step,
               " of size ", batch_size, " rows ", begin, "..", end);
  ClickBatch b = make_batch(end - begin, fields(), options_.dense_features);
  for (std::int64_t i = begin; i < end; ++i)
    generate(0, (step * batch_size + i) % options_.train_samples, b, i - begin);
  return b;
}

ClickBatch ClickLog::test_batch(std::int64_t first, std::int64_t count) const {
  TROUPE_CHECK(first >= 0 && count >= 0, "test batch at ", first, " of size ", count);
  const std::int64_t n = std::max<std::int64_t>(0, std::min(count, options_.test_samples - first));
  ClickBatch b = make_batch(n, fields(), options_.dense_features);
  for (std::int64_t i = 0; i < n; ++i) generate(1, first + i, b, i);
  return b;
}

std::string ClickLog::describe() const {
  std::string cards;
  for (std::size_t f = 0; f < options_.cardinalities.size(); ++f)
    cards += (f ? ", " : "") + std::to_string(options_.cardinalities[f]);
  return fmt::format("synthetic click log: {} categorical fields (ids {}), {} dense features, Zipf {}, {} train / {} test samples, seed {}",
                     fields(), cards, options_.dense_features, options_.zipf, options_.train_samples, options_.test_samples,
                     options_.seed);
}

}  // namespace troupe
