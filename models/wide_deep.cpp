// WideDeep: lookups (unique rows per table), the forward pass, and the backward pass into compact table gradients.
#include "models/wide_deep.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "models/fm_interaction.h"
#include "models/init.h"
#include "runtime/error.h"
#include "runtime/splitmix64.h"

namespace troupe {

namespace {

std::uint64_t mix(std::uint64_t z) { return splitmix64_mix(z); }

// Unique sorted ids of `raw`, and each position's index into them.
TableLookup make_lookup(std::vector<std::int64_t> raw) {
  TableLookup l;
  l.ids = raw;
  std::sort(l.ids.begin(), l.ids.end());
  l.ids.erase(std::unique(l.ids.begin(), l.ids.end()), l.ids.end());
  l.index = Tensor::empty({static_cast<std::int64_t>(raw.size())}, DType::i32);
  std::int32_t* out = l.index.i32();
  for (std::size_t i = 0; i < raw.size(); ++i)
    out[i] = static_cast<std::int32_t>(std::lower_bound(l.ids.begin(), l.ids.end(), raw[i]) - l.ids.begin());
  return l;
}

}  // namespace

WideDeep::WideDeep(WideDeepOptions o) : options_(std::move(o)) {
  auto bad = [this](const std::string& what) { throw Error(ErrorKind::kConfig, std::string(label()) + ": " + what); };
  const int F = fields();
  if (F < 1) bad("needs at least one categorical field");
  if (options_.embed_dim < 1) bad(fmt::format("embed_dim = {}: must be >= 1", options_.embed_dim));
  for (int h : options_.hidden)
    if (h < 1) bad(fmt::format("hidden width {}: every width must be >= 1", h));
  if (options_.wide_buckets < 1 || options_.wide_buckets > 0x7FFFFFFF)
    bad(fmt::format("wide_buckets = {}: must be in [1, 2^31 - 1]", options_.wide_buckets));
  const bool deepfm = options_.kind == RecommenderKind::deepfm;
  if (deepfm && !options_.crosses.empty())
    bad(fmt::format("crosses: {} given, but DeepFM's first-order term has none (its FM term models every pair)",
                    options_.crosses.size()));
  if (options_.crosses.empty() && !deepfm)
    for (int a = 0; a < F; ++a)
      for (int b = a + 1; b < F; ++b) options_.crosses.emplace_back(a, b);
  for (auto [a, b] : options_.crosses)
    if (a < 0 || a >= F || b < 0 || b >= F) bad(fmt::format("cross ({}, {}) names a field outside 0..{}", a, b, F - 1));

  for (int f = 0; f < F; ++f) {
    if (options_.cardinalities[f] < 1) bad(fmt::format("field {} has cardinality {}", f, options_.cardinalities[f]));
    tables_.push_back({"deep.embedding." + std::to_string(f), options_.cardinalities[f], options_.embed_dim});
  }
  tables_.push_back({"wide.weight", options_.wide_buckets, 1});

  wide_bias_ = &dense_.add("wide.bias", {1});
  init_constant(wide_bias_->value, 0.0f);
  int in = F * options_.embed_dim + options_.dense_features;
  std::vector<int> widths = options_.hidden;
  widths.push_back(1);
  for (std::size_t k = 0; k < widths.size(); ++k) {
    const std::string prefix = "deep.layers." + std::to_string(k);
    Param& w = dense_.add(prefix + ".weight", {widths[k], in});
    Param& b = dense_.add(prefix + ".bias", {widths[k]});
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // torch.nn.Linear's default
    init_uniform(w.value, options_.seed, w.name, bound);
    init_uniform(b.value, options_.seed, b.name, bound);
    weights_.push_back(&w);
    biases_.push_back(&b);
    in = widths[k];
  }
  for (Param* p : dense_.all()) p->grad = Tensor::zeros(p->value.shape());
}

Tensor WideDeep::initial_dense(const std::string& name) const {
  // Recomputed from the same seeded streams as the constructor (the model's own values may have trained).
  WideDeep fresh(options_);
  return fresh.dense().at(name).value;
}

void WideDeep::init_rows(int table, std::span<const std::int64_t> rows, const Tensor& out) const {
  const TableSpec& t = tables_.at(static_cast<std::size_t>(table));
  TROUPE_CHECK(out.numel() == static_cast<std::int64_t>(rows.size()) * t.dim, "init rows of ", t.name);
  float* o = out.f32();
  if (table == wide_table()) {
    std::fill(o, o + out.numel(), 0.0f);
    return;
  }
  const std::uint64_t stream = init_stream_seed(options_.seed, t.name);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::int64_t c = 0; c < t.dim; ++c) {
      const std::uint64_t h = mix(mix(stream ^ static_cast<std::uint64_t>(rows[i])) + static_cast<std::uint64_t>(c));
      const double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
      o[static_cast<std::int64_t>(i) * t.dim + c] = static_cast<float>(0.05 * (2.0 * u - 1.0));
    }
}

std::vector<TableLookup> WideDeep::lookup(const ClickBatch& batch) const {
  const int F = fields(), W = wide_features();
  const std::int64_t B = batch.size();
  if (batch.categorical.dtype() != DType::i32 || batch.categorical.shape() != Shape{B, F})
    throw Error(ErrorKind::kInput, fmt::format("{}: categorical ids are {} {}, expected i32 [{}, {}]", label(),
                                               dtype_name(batch.categorical.dtype()), shape_str(batch.categorical.shape()), B, F));
  const std::int32_t* ids = batch.categorical.i32();
  std::vector<TableLookup> out;
  for (int f = 0; f < F; ++f) {
    std::vector<std::int64_t> raw(static_cast<std::size_t>(B));
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t id = ids[b * F + f];
      if (id < 0 || id >= options_.cardinalities[f])
        throw Error(ErrorKind::kInput, fmt::format("{}: sample {} field {} has id {}, outside [0, {})", label(), b, f, id,
                                                   options_.cardinalities[f]));
      raw[static_cast<std::size_t>(b)] = id;
    }
    out.push_back(make_lookup(std::move(raw)));
  }
  // Wide features: field f's id hashed with salt f; cross (a, b) with salt F + its index.
  std::vector<std::int64_t> raw(static_cast<std::size_t>(B * W));
  const std::uint64_t buckets = static_cast<std::uint64_t>(options_.wide_buckets);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int32_t* s = ids + b * F;
    for (int f = 0; f < F; ++f)
      raw[static_cast<std::size_t>(b * W + f)] = static_cast<std::int64_t>(mix(mix(static_cast<std::uint64_t>(f)) ^ static_cast<std::uint64_t>(s[f])) % buckets);
    for (std::size_t c = 0; c < options_.crosses.size(); ++c) {
      const auto [fa, fb] = options_.crosses[c];
      const std::uint64_t h = mix(mix(mix(static_cast<std::uint64_t>(F + c)) ^ static_cast<std::uint64_t>(s[fa])) ^ static_cast<std::uint64_t>(s[fb]));
      raw[static_cast<std::size_t>(b * W + F) + c] = static_cast<std::int64_t>(h % buckets);
    }
  }
  out.push_back(make_lookup(std::move(raw)));
  return out;
}

void WideDeep::check_inputs(const ClickBatch& batch, const std::vector<TableLookup>& lookups, const std::vector<Tensor>& rows) const {
  const std::int64_t B = batch.size();
  if (lookups.size() != tables_.size() || rows.size() != tables_.size())
    throw Error(ErrorKind::kInput, fmt::format("{}: {} lookups and {} row sets for {} tables", label(), lookups.size(),
                                               rows.size(), tables_.size()));
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    const Shape want{static_cast<std::int64_t>(lookups[t].ids.size()), tables_[t].dim};
    if (!rows[t].defined() || rows[t].dtype() != DType::f32 || rows[t].shape() != want)
      throw Error(ErrorKind::kInput, fmt::format("{}: rows of {} are {}, expected f32 {}", label(), tables_[t].name,
                                                 rows[t].defined() ? shape_str(rows[t].shape()) : "undefined", shape_str(want)));
  }
  if (batch.dense.shape() != Shape{B, options_.dense_features} || batch.labels.shape() != Shape{B})
    throw Error(ErrorKind::kInput, fmt::format("{}: dense features {} and labels {}, expected [{}, {}] and [{}]", label(),
                                               shape_str(batch.dense.shape()), shape_str(batch.labels.shape()), B,
                                               options_.dense_features, B));
}

WideDeep::Activations WideDeep::forward(Backend& be, const ClickBatch& batch, const std::vector<TableLookup>& lookups,
                                        const std::vector<Tensor>& rows) const {
  check_inputs(batch, lookups, rows);
  const int F = fields(), d = options_.embed_dim, D = options_.dense_features, W = wide_features();
  const std::int64_t B = batch.size(), width = static_cast<std::int64_t>(F) * d + D;
  Activations a;
  // h[0] = [emb_0 | emb_1 | ... | dense]
  Tensor x0 = be.empty({B, width});
  Tensor e = be.empty({B, d});
  for (int f = 0; f < F; ++f) {
    be.embedding_forward(lookups[static_cast<std::size_t>(f)].index, rows[static_cast<std::size_t>(f)], e);
    for (std::int64_t b = 0; b < B; ++b)
      std::memcpy(x0.f32() + b * width + f * d, e.f32() + b * d, static_cast<std::size_t>(d) * sizeof(float));
  }
  for (std::int64_t b = 0; b < B; ++b)
    std::memcpy(x0.f32() + b * width + static_cast<std::int64_t>(F) * d, batch.dense.f32() + b * D, static_cast<std::size_t>(D) * sizeof(float));
  a.h.push_back(x0);
  for (std::size_t k = 0; k < weights_.size(); ++k) {
    Tensor y = be.empty({B, weights_[k]->value.dim(0)});
    be.linear_forward(a.h.back(), weights_[k]->value, biases_[k]->value, y, 1);
    if (k + 1 < weights_.size()) be.relu_forward(y, y);
    a.h.push_back(y);
  }
  // Wide: one weight per hashed feature, summed per sample in feature order.
  Tensor w = be.empty({B * W, 1});
  be.embedding_forward(lookups[static_cast<std::size_t>(wide_table())].index, rows[static_cast<std::size_t>(wide_table())], w);
  a.logits = be.empty({B});
  const float bias = wide_bias_->value.f32()[0];
  const float* deep = a.h.back().f32();
  for (std::int64_t b = 0; b < B; ++b) {
    float z = deep[b] + bias;
    for (int j = 0; j < W; ++j) z += w.f32()[b * W + j];
    a.logits.f32()[b] = z;
  }
  if (options_.kind == RecommenderKind::deepfm) {  // + the FM term over the deep part's embeddings
    Tensor fm = Tensor::empty({B});
    fm_interaction_forward(x0, F, d, fm);
    for (std::int64_t b = 0; b < B; ++b) a.logits.f32()[b] += fm.f32()[b];
  }
  return a;
}

Tensor WideDeep::predict(Backend& be, const ClickBatch& batch, const std::vector<TableLookup>& lookups,
                         const std::vector<Tensor>& rows) const {
  Activations a = forward(be, batch, lookups, rows);
  Tensor p = Tensor::empty({batch.size()});
  for (std::int64_t b = 0; b < batch.size(); ++b) p.f32()[b] = 1.0f / (1.0f + std::exp(-a.logits.f32()[b]));
  return p;
}

WideDeep::Pass WideDeep::forward_backward(Backend& be, const ClickBatch& batch, const std::vector<TableLookup>& lookups,
                                          const std::vector<Tensor>& rows, float loss_scale) {
  for (Param* p : dense_.all()) TROUPE_CHECK(p->grad.defined(), "gradient of ", p->name, " is not allocated");
  Activations a = forward(be, batch, lookups, rows);
  const int F = fields(), d = options_.embed_dim, W = wide_features();
  const std::int64_t B = batch.size(), width = a.h[0].dim(1);
  Pass pass;
  pass.probs = Tensor::empty({B});
  Tensor dz = be.empty({B, 1});
  const float* y = batch.labels.f32();
  for (std::int64_t b = 0; b < B; ++b) {
    const float z = a.logits.f32()[b];
    const float p = 1.0f / (1.0f + std::exp(-z));
    pass.probs.f32()[b] = p;
    pass.loss_sum += std::max(z, 0.0f) - z * y[b] + std::log1p(std::exp(-std::abs(z)));
    dz.f32()[b] = loss_scale * (p - y[b]);
  }
  // Wide part: bias and one row per hashed feature.
  float dbias = 0.0f;
  for (std::int64_t b = 0; b < B; ++b) dbias += dz.f32()[b];
  wide_bias_->grad.f32()[0] += dbias;
  Tensor dwide = be.empty({B * W, 1});
  for (std::int64_t b = 0; b < B; ++b)
    for (int j = 0; j < W; ++j) dwide.f32()[b * W + j] = dz.f32()[b];
  pass.table_grads.resize(tables_.size());
  for (std::size_t t = 0; t < tables_.size(); ++t)
    pass.table_grads[t] = Tensor::zeros({static_cast<std::int64_t>(lookups[t].ids.size()), tables_[t].dim});
  be.embedding_backward(lookups[static_cast<std::size_t>(wide_table())].index, dwide, pass.table_grads[static_cast<std::size_t>(wide_table())]);
  // Deep part, output layer first.
  Tensor dy = dz;
  for (std::size_t k = weights_.size(); k-- > 0;) {
    if (k + 1 < weights_.size()) {
      Tensor g = be.empty(dy.shape());
      be.relu_backward(a.h[k + 1], dy, g);
      dy = g;
    }
    Tensor dx = be.empty(a.h[k].shape());
    be.linear_backward(dy, a.h[k], weights_[k]->value, dx, weights_[k]->grad, biases_[k]->grad, 1);
    dy = dx;
  }
  // dy is d/d(h[0]) through the MLP; DeepFM's FM term adds its own into the same embedding columns.
  if (options_.kind == RecommenderKind::deepfm) fm_interaction_backward(a.h[0], F, d, dz, dy);
  // Route each field's columns to its embedding rows.
  Tensor de = be.empty({B, d});
  for (int f = 0; f < F; ++f) {
    for (std::int64_t b = 0; b < B; ++b)
      std::memcpy(de.f32() + b * d, dy.f32() + b * width + f * d, static_cast<std::size_t>(d) * sizeof(float));
    be.embedding_backward(lookups[static_cast<std::size_t>(f)].index, de, pass.table_grads[static_cast<std::size_t>(f)]);
  }
  return pass;
}

}  // namespace troupe
