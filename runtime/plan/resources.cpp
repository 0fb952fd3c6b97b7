// The memory estimate and the resource check: arithmetic in doubles, so that no product can wrap.
#include "runtime/plan/resources.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::plan {

namespace {

constexpr double kFloat = 4.0;  // bytes: parameters, gradients, state and activations are float32
constexpr double kMlpInputs = 784, kMlpSide = 28, kMlpClasses = 10;  // Fashion-MNIST (models/model.cpp)

std::string gigabytes(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }

// Per layer, in the order of models/model.cpp's layer specs: parameters and the floats saved for backward
// per row of a micro-batch (a token for the GPT and the LSTM, an image for the MLP and the CNN).
struct LayerCost {
  double params = 0, saved_per_row = 0;
};

// `tensor` (parallel.tensor = T): saved floats per row of one tensor shard, whose split activations
// (heads, the MLP's hidden units, the vocabulary, a column-parallel layer's outputs, a row-parallel
// layer's inputs) are 1/T of the whole; parameters stay the whole model's. `sequence` (parallel.
// sequence_parallel): the GPT's LayerNorm and residual regions are 1/T too (each shard keeps its part of
// the sequence, and gathers a LayerNorm's output again in backward rather than keep it whole).
std::vector<LayerCost> layer_costs(const ModelConfig& m, double tensor = 1, bool sequence = false) {
  std::vector<LayerCost> layers;
  if (m.kind == ModelKind::gpt) {
    const double c = m.n_embd, v = m.vocab_size, t = m.block_size, h = m.n_head;
    const double replicated = sequence ? tensor : 1;  // what the LayerNorm/residual regions are divided by
    layers.push_back({(v + t) * c, c / replicated});  // wte, wpe; the embedding's output
    for (int i = 0; i < m.n_layer; ++i)  // ln 2x2c, qkv 3c^2+3c, proj c^2+c, fc 4c^2+4c, fc proj 4c^2+c
      layers.push_back({12 * c * c + 13 * c,
                        // x, ln1, x mid, ln2; the mean and rstd of two layer norms (replicated, or split
                        // along the sequence); split: qkv (3), attn y, fc (4), gelu (4), an attention row of
                        // block_size per head
                        (4 * c + 4) / replicated + (12 * c + h * t) / tensor});
    // ln_f (lm_head is wte, tied); x, h, mean, rstd, probs
    layers.push_back({2 * c, (2 * c + 2) / replicated + v / tensor});
  } else if (m.kind == ModelKind::cnn) {  // models/cnn_layers.h; convolutions have no bias
    const auto side_after = [](double side, double stride) { return std::floor((side - 1) / stride) + 1; };
    double in = m.cnn_channels.at(0), side = side_after(kMlpSide, m.cnn_stem_stride);
    // stem: conv 3x3 1 -> C0 and its batch norm; the image, the conv's output and the activation
    layers.push_back({9 * in + 2 * in, kMlpInputs + 2 * in * side * side});
    for (std::size_t s = 0; s < m.cnn_channels.size(); ++s)
      for (int b = 0; b < m.cnn_blocks.at(s); ++b) {
        const double out = m.cnn_channels[s], stride = s > 0 && b == 0 ? 2 : 1, out_side = side_after(side, stride);
        const bool shortcut = stride != 1 || in != out;  // a 1x1 conv and a batch norm on the skip path
        const double plane = out * out_side * out_side;
        // two 3x3 convs with batch norms; saved: the input, conv1, relu, conv2, output (+ shortcut conv)
        layers.push_back({9 * in * out + 2 * out + 9 * out * out + 2 * out + (shortcut ? in * out + 2 * out : 0),
                          in * side * side + 4 * plane + (shortcut ? plane : 0)});
        in = out;
        side = out_side;
      }
    layers.push_back({in * kMlpClasses + kMlpClasses, in * side * side + in});  // pooled fc: input, pooled
    layers.push_back({0, kMlpClasses});                                         // the loss: probabilities
  } else if (m.kind == ModelKind::deepfm) {  // models/wide_deep.h over the click log (runtime/data/click_log.h)
    // Tables: six fields' embeddings (the largest field's ids, then 1/10, 3/100, 1/100, 1/1000, 1/10000 of
    // it) and the first-order table; the MLP over 6 embeddings + 4 dense features. Saved per sample: the
    // MLP's input and its activations.
    const double c = static_cast<double>(m.max_cardinality), e = m.embed_dim;
    double in = 6 * e + 4, mlp = 0, saved = in;
    for (int w : m.deep_hidden) {
      mlp += in * w + w;
      saved += 2.0 * w;
      in = w;
    }
    mlp += in + 1;
    layers.push_back({c * (1 + 0.1 + 0.03 + 0.01 + 0.001 + 0.0001) * e + static_cast<double>(m.hashed_rows) + mlp + 1, saved});
  } else if (m.kind == ModelKind::lstm) {  // models/lstm_layers.h: E = H = n_embd
    const double h = m.n_embd, v = m.vocab_size;
    layers.push_back({v * h, 0});  // the embedding saves only the token ids
    for (int i = 0; i < m.n_layer; ++i)  // W_ih, W_hh 4h x h each, two 4h biases
      // saved: the input x, h and c per step, the 4 gate activations; and while it runs, the input
      // projection (4h) and, in backward, dz (4h) and h_{t-1} (h)
      layers.push_back({8 * h * h + 8 * h, 3 * h + 4 * h + 4 * h});
    layers.push_back({v * h + v, h + v});  // head: its input, logits
    layers.push_back({0, v});              // the loss: probabilities
  } else {
    double in = kMlpInputs;
    std::vector<double> widths(m.mlp_hidden.begin(), m.mlp_hidden.end());
    widths.push_back(kMlpClasses);
    // Dense layers pair up column- then row-parallel (models/model.cpp); an unpaired last one is whole.
    for (std::size_t k = 0; k < widths.size(); ++k) {
      const double out = widths[k];
      const bool row = k % 2 == 1, column = !row && k + 1 < widths.size();
      // its input and output (ReLU applies in place)
      layers.push_back({in * out + out, (row ? in / tensor : in) + (column ? out / tensor : out)});
      in = out;
    }
    layers.push_back({0, kMlpClasses});  // the loss: probabilities
  }
  return layers;
}

// Adam keeps two moments; SGD a momentum buffer when momentum is on; RMSprop a square average, plus a
// momentum buffer and a gradient average when those are on.
double state_floats_per_param(const OptimConfig& o) {
  switch (o.kind) {
    case OptimKind::adam:
    case OptimKind::adamw: return 2;
    case OptimKind::sgd: return o.momentum_or_default() > 0 ? 1 : 0;
    case OptimKind::rmsprop: return 1 + (o.momentum_or_default() > 0 ? 1 : 0) + (o.centered ? 1 : 0);
  }
  return 2;
}

// Micro-batches whose activations stage `s` of `p` holds at once under the schedule.
double in_flight(ScheduleKind schedule, int s, int p, int microbatches) {
  switch (schedule) {
    case ScheduleKind::gpipe: return microbatches;
    case ScheduleKind::one_f_one_b: return std::min(microbatches, p - s);
    default: return std::min(microbatches, p);
  }
}

}  // namespace

ShardMemory shard_memory(const RunConfig& config, const Topology& topology, int stage) {
  const int tp = topology.size(Axis::tensor), p = topology.size(Axis::pipe);
  const StagePlan& plan = topology.stages.at(static_cast<std::size_t>(stage));
  const std::vector<LayerCost> layers = layer_costs(config.model, tp, config.parallel.sequence_parallel);
  ShardMemory m;
  m.parameters = static_cast<double>(plan.shard_param_bytes(tp));
  m.gradients = m.parameters;
  m.optimizer_state = m.parameters * state_floats_per_param(config.optim);
  if (topology.zero) m.optimizer_state /= topology.size(Axis::data);  // ZeRO-1: each replica's share
  double saved = 0;  // floats per row of the layers this stage holds
  for (const auto& [begin, end] : plan.chunks)
    for (std::size_t i = begin; i < end && i < layers.size(); ++i) saved += layers[i].saved_per_row;
  const double rows = static_cast<double>(config.train.batch_size) / topology.size(Axis::data) /
                      topology.microbatches * (is_language_model(config.model.kind) ? config.model.block_size : 1);
  m.activations = kFloat * saved * rows * in_flight(topology.schedule, stage, p, topology.microbatches);
  return m;
}

std::string describe_shard_memory(const RunConfig& config, const Topology& topology) {
  const int tp = topology.size(Axis::tensor);
  std::string out = fmt::format(
      "memory per tensor shard (bytes; gradients as the parameters, {} state {} float{} per parameter{}, activations "
      "saved for backward at their peak):\n",
      config.optim.kind, state_floats_per_param(config.optim), state_floats_per_param(config.optim) == 1 ? "" : "s",
      topology.zero ? " over the replicas (ZeRO-1)" : "");
  for (int s = 0; s < static_cast<int>(topology.stages.size()); ++s) {
    const ShardMemory m = shard_memory(config, topology, s);
    out += fmt::format("  stage {} x {} shard{}: parameters {:.0f}, gradients {:.0f}, optimizer state {:.0f}, "
                       "activations {:.0f}\n",
                       s, tp, tp == 1 ? "" : "s", m.parameters, m.gradients, m.optimizer_state, m.activations);
  }
  return out;
}

std::string MemoryEstimate::describe() const {
  return fmt::format("{} (parameters {}, gradients {}, optimizer state {}, activations {})", gigabytes(total()),
                     gigabytes(parameters), gigabytes(gradients), gigabytes(optimizer_state), gigabytes(activations));
}

double parameter_count(const ModelConfig& model) {
  double n = 0;
  for (const LayerCost& l : layer_costs(model)) n += l.params;
  return n;
}

MemoryEstimate estimate_memory(const RunConfig& config, const Topology& topology) {
  const std::vector<LayerCost> layers = layer_costs(config.model);
  double params = 0;
  for (const LayerCost& l : layers) params += l.params;
  const double replicas = topology.size(Axis::data);
  const bool servers = topology.servers.has_value();

  MemoryEstimate e;
  e.parameters = kFloat * params * (replicas + (servers ? 1 : 0));
  e.gradients = kFloat * params * replicas;
  const double state = kFloat * params * state_floats_per_param(config.optim);
  e.optimizer_state = (topology.zero || servers) ? state : state * replicas;

  // Rows of one micro-batch on one replica: its share of the batch, times the tokens of a sequence.
  const double rows = static_cast<double>(config.train.batch_size) / replicas / topology.microbatches *
                      (is_language_model(config.model.kind) ? config.model.block_size : 1);
  const int p = topology.size(Axis::pipe);
  double per_replica = 0;
  for (int s = 0; s < p; ++s) {
    double saved = 0;  // floats per row of the layers stage s holds
    if (static_cast<std::size_t>(s) < topology.stages.size()) {
      for (const auto& [begin, end] : topology.stages[static_cast<std::size_t>(s)].chunks)
        for (std::size_t i = begin; i < end && i < layers.size(); ++i) saved += layers[i].saved_per_row;
    } else {  // a Topology without stages (one device): every layer
      for (const LayerCost& l : layers) saved += l.saved_per_row;
    }
    per_replica += saved * rows * in_flight(topology.schedule, s, p, topology.microbatches);
  }
  e.activations = kFloat * per_replica * replicas;
  return e;
}

std::optional<double> available_memory_bytes() {
  if (const char* env = std::getenv("TROUPE_MEMORY_AVAILABLE")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && *end == '\0' && v >= 0) return v;
    throw Error(ErrorKind::kConfig,
                fmt::format("TROUPE_MEMORY_AVAILABLE = '{}': expected a number of bytes, e.g. 8e9", env));
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream in(line.substr(13));
    double kib = 0;
    if (in >> kib) return kib * 1024.0;
  }
  return std::nullopt;
}

void check_resources(const RunConfig& config, const Topology& topology, int hardware_threads,
                     std::optional<double> available) {
  const int hw = std::max(1, hardware_threads);
  if (config.train.threads > 4 * hw)
    throw Error(ErrorKind::kConfig,
                fmt::format("train.threads = {}: this machine has {} hardware threads, and more than 4x that ({}) "
                            "only time-slices the same cores; use train.threads = 0 (all of them) or at most {}",
                            config.train.threads, hw, 4 * hw, 4 * hw));
  if (!available) return;
  for (const Place& place : topology.places)
    if (place.device.is_cuda()) return;  // device memory, not the host's
  const MemoryEstimate e = estimate_memory(config, topology);
  if (e.total() > *available)
    throw Error(ErrorKind::kConfig,
                fmt::format("this configuration needs at least {} of memory, and {} is available: reduce "
                            "train.batch_size, model.* sizes or parallel.data, or use more parallel.microbatches",
                            e.describe(), gigabytes(*available)));
}

}  // namespace troupe::plan
