// Model: building layers from specs and running them in order.
#include "models/model.h"

#include <algorithm>
#include <numeric>

#include "models/cnn_layers.h"
#include "models/gpt_layers.h"
#include "models/lstm_layers.h"
#include "models/mlp_layers.h"

namespace troupe {

namespace {
std::vector<LayerSpec> gpt_specs(const ModelConfig& c, std::uint64_t seed, comm::TensorGroup g) {
  GptShape shape{c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size};
  const std::int64_t e = c.n_embd, v = c.vocab_size;
  std::vector<LayerSpec> specs;
  // Split: wte (by vocabulary); replicated: wpe.
  specs.push_back({"transformer.wte+wpe", 4.0 * c.n_embd,
                   [=](ParamSet& p) { return std::make_unique<GptEmbedding>(p, shape, seed, g); }, "", v * e,
                   std::int64_t{c.block_size} * e});
  const double block_cost = 3.0 * 2.0 * (12.0 * c.n_embd * c.n_embd + 2.0 * c.block_size * c.n_embd);
  // Split: c_attn (weight, bias), attn c_proj weight, c_fc (weight, bias), mlp c_proj weight;
  // replicated: two LayerNorms and the row-parallel biases.
  const std::int64_t block_split = (3 * e * e + 3 * e) + e * e + (4 * e * e + 4 * e) + 4 * e * e;
  for (int i = 0; i < c.n_layer; ++i)
    specs.push_back({"transformer.h." + std::to_string(i), block_cost,
                     [=](ParamSet& p) { return std::make_unique<GptBlock>(p, shape, i, seed, g); }, "", block_split,
                     6 * e});
  specs.push_back({"transformer.ln_f+lm_head", 6.0 * c.n_embd * c.vocab_size,
                   [=](ParamSet& p) { return std::make_unique<GptHead>(p, shape, seed, g); }, "transformer.wte.weight",
                   0, 2 * e});
  return specs;
}

std::vector<LayerSpec> mlp_specs(const ModelConfig& c, std::uint64_t seed, comm::TensorGroup g) {
  std::vector<int> widths = {784};
  widths.insert(widths.end(), c.mlp_hidden.begin(), c.mlp_hidden.end());
  widths.push_back(10);
  std::vector<LayerSpec> specs;
  const std::size_t dense = widths.size() - 1;
  // Every parallel.tensor the config allows divides the column-parallel widths, so their gcd: how many
  // exact pieces deterministic mode cuts the split sums into.
  int pieces = 0;
  for (std::size_t k = 0; k + 1 < dense; k += 2) pieces = std::gcd(pieces, widths[k + 1]);
  pieces = std::max(pieces, 1);
  for (std::size_t k = 0; k < dense; ++k) {
    const int in = widths[k], out = widths[k + 1];
    const bool relu = k + 2 < widths.size();
    // Pairs (layers.0, layers.1), (layers.2, layers.3), ...: column- then row-parallel; an unpaired
    // last layer (10 outputs) stays whole.
    const DenseSplit split = k % 2 == 1 ? DenseSplit::row : k + 1 < dense ? DenseSplit::column : DenseSplit::whole;
    const std::int64_t w = std::int64_t{in} * out;
    const std::int64_t split_n = split == DenseSplit::column ? w + out : split == DenseSplit::row ? w : 0;
    specs.push_back({"layers." + std::to_string(k), 6.0 * in * out,
                     [=](ParamSet& p) {
                       return std::make_unique<DenseLayer>(p, static_cast<int>(k), in, out, relu, seed, g, split, pieces);
                     },
                     "", split_n, w + out - split_n});
  }
  specs.push_back({"loss", 0.0, [](ParamSet&) { return std::make_unique<SoftmaxCrossEntropy>(); }});
  return specs;
}
// Stem, one layer per residual block (the unit pipeline stages split by), pooled head, loss.
std::vector<LayerSpec> cnn_specs(const ModelConfig& c, std::uint64_t seed) {
  const CnnShape shape{c.cnn_channels, c.cnn_blocks, 10, 28, c.cnn_stem_stride};
  std::vector<LayerSpec> specs;
  auto add = [&](std::function<std::unique_ptr<Layer>(ParamSet&)> make) {
    ParamSet probe;  // the layer's name and cost, from a throwaway instance
    auto layer = make(probe);
    specs.push_back({layer->name(), layer->flops_per_row(), std::move(make)});
  };
  add([=](ParamSet& p) { return std::make_unique<CnnStem>(p, shape, seed); });
  int in = shape.channels.at(0), side = shape.stem_side(), index = 0;
  for (std::size_t s = 0; s < shape.channels.size(); ++s)
    for (int b = 0; b < shape.blocks.at(s); ++b) {
      const int out = shape.channels[s], stride = s > 0 && b == 0 ? 2 : 1;
      add([=](ParamSet& p) { return std::make_unique<ResidualBlock>(p, index, in, out, stride, side, seed); });
      in = out;
      side = (side - 1) / stride + 1;
      ++index;
    }
  add([=](ParamSet& p) { return std::make_unique<CnnHead>(p, in, shape.classes, seed); });
  specs.push_back({"loss", 0.0, [](ParamSet&) { return std::make_unique<SoftmaxCrossEntropy>(); }});
  return specs;
}
// Embedding, one layer per LSTM layer (the unit pipeline stages split by), head, loss.
std::vector<LayerSpec> lstm_specs(const ModelConfig& c, std::uint64_t seed) {
  const LstmShape shape{c.n_layer, c.n_embd, c.vocab_size};
  std::vector<LayerSpec> specs;
  auto add = [&](std::function<std::unique_ptr<Layer>(ParamSet&)> make) {
    ParamSet probe;  // the layer's name and cost, from a throwaway instance
    auto layer = make(probe);
    specs.push_back({layer->name(), layer->flops_per_row(), std::move(make)});
  };
  add([=](ParamSet& p) { return std::make_unique<LstmEmbedding>(p, shape, seed); });
  for (int i = 0; i < c.n_layer; ++i) add([=](ParamSet& p) { return std::make_unique<LstmLayer>(p, shape, i, seed); });
  add([=](ParamSet& p) { return std::make_unique<LstmHead>(p, shape, seed); });
  specs.push_back({"loss", 0.0, [](ParamSet&) { return std::make_unique<SoftmaxCrossEntropy>(); }});
  return specs;
}
}  // namespace

std::string tied_weight_of(const std::vector<LayerSpec>& specs) {
  for (const LayerSpec& spec : specs)
    if (!spec.tied_weight.empty()) return spec.tied_weight;
  return {};
}

plan::LayerInfo layer_info(const std::vector<LayerSpec>& specs) {
  plan::LayerInfo info;
  for (const LayerSpec& spec : specs) {
    info.names.push_back(spec.name);
    info.costs.push_back(spec.flops_per_row);
    info.split_params.push_back(spec.split_params);
    info.replicated_params.push_back(spec.replicated_params);
  }
  return info;
}

std::vector<LayerSpec> make_layer_specs(const ModelConfig& config, std::uint64_t seed, comm::TensorGroup group) {
  TROUPE_CHECK(!group.split() || config.kind == ModelKind::gpt || config.kind == ModelKind::mlp,
               "tensor parallelism for model.kind ", name_of(config.kind));
  switch (config.kind) {
    case ModelKind::gpt: return gpt_specs(config, seed, group);
    case ModelKind::mlp: return mlp_specs(config, seed, group);
    case ModelKind::cnn: return cnn_specs(config, seed);
    case ModelKind::lstm: return lstm_specs(config, seed);
    case ModelKind::deepfm:  // not a stack of layers: WideDeep (models/wide_deep.h) on parameter servers
      throw Error(ErrorKind::kInternal, "make_layer_specs: model.kind = deepfm has no layer stack (actors/recommender_job.h runs it)");
  }
  throw Error(ErrorKind::kInternal, "make_layer_specs: model.kind out of range");
}

Model::Model(const std::vector<LayerSpec>& specs, std::size_t first, std::size_t last) {
  last = std::min(last, specs.size());
  TROUPE_CHECK(first <= last, "layer range [", first, ", ", last, ")");
  for (std::size_t i = first; i < last; ++i) layers_.push_back(specs[i].make(params_));
}

Tensor Model::forward(Backend& be, const MicroBatch& mb, std::vector<LayerCtx>& ctxs, const Tensor& input) {
  TROUPE_CHECK(ctxs.size() == layers_.size(), "contexts ", ctxs.size(), " for ", layers_.size(), " layers");
  Tensor x = input;
  for (std::size_t i = 0; i < layers_.size(); ++i) x = layers_[i]->forward(be, mb, ctxs[i], x);
  return x;
}

Tensor Model::backward(Backend& be, const MicroBatch& mb, std::vector<LayerCtx>& ctxs, const Tensor& dy,
                       const std::function<void(std::size_t)>& after_layer) {
  Tensor g = dy;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    g = layers_[i]->backward(be, mb, ctxs[i], g);
    if (after_layer) after_layer(i);
  }
  return g;
}

std::vector<Tensor> Model::grad_buffers(std::size_t layer) const {
  std::vector<Tensor> out;
  for (Param* p : layers_.at(layer)->params()) out.push_back(p->grad);
  for (Tensor& t : layers_.at(layer)->extra_grads()) out.push_back(t);
  return out;
}

void Model::flush_exact_grads(Backend& be) const {
  if (!be.deterministic()) return;
  for (std::size_t i = 0; i < layers_.size(); ++i)
    for (const Tensor& t : grad_buffers(i)) be.flush_exact_grad(t);
}

void Model::zero_grad() {
  params_.zero_grad();
  for (auto& l : layers_) l->zero_extra_grads();
}

void Model::finish_grads() {
  for (auto& l : layers_) l->fold_extra_grads();
}

}  // namespace troupe
