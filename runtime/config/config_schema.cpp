// The config schema table, plus parsing, range checks, suggestions and help driven by it.
#include "runtime/config/config_schema.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <limits>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/comm/compression/compression_spec.h"
#include "runtime/config/stage_devices.h"
#include "runtime/error.h"

namespace troupe {

// ---- ranges -----------------------------------------------------------------------------------------

namespace {

// Bounds are printed as integers when they are integers, so int keys read "must be >= 1", not ">= 1.0".
std::string bound_str(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e18) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

std::string bounds_of(const Range& r) {
  // Integer ranges name each side ("must be >= 1 and <= 1048576"): the lower bound is the one people meet
  // (batch_size = 0), the upper one a cap against overflow.
  if (r.min && r.max && r.integral)
    return fmt::format("{} {} and {} {}", r.min_exclusive ? ">" : ">=", bound_str(*r.min),
                       r.max_exclusive ? "<" : "<=", bound_str(*r.max));
  if (r.min && r.max)
    return fmt::format("in {}{}, {}{}", r.min_exclusive ? "(" : "[", bound_str(*r.min), bound_str(*r.max),
                       r.max_exclusive ? ")" : "]");
  if (r.min) return fmt::format("{} {}", r.min_exclusive ? ">" : ">=", bound_str(*r.min));
  if (r.max) return fmt::format("{} {}", r.max_exclusive ? "<" : "<=", bound_str(*r.max));
  return {};
}

Range at_least(double v) {
  Range r;
  r.min = v;
  return r;
}
Range above(double v) {
  Range r = at_least(v);
  r.min_exclusive = true;
  return r;
}
Range between(double lo, double hi) {
  Range r = at_least(lo);
  r.max = hi;
  return r;
}
Range bucket_range() {  // (0, 65536]
  Range r = above(0);
  r.max = 65536;
  return r;
}
Range from_to_excl(double lo, double hi) {
  Range r = between(lo, hi);
  r.max_exclusive = true;
  return r;
}

}  // namespace

bool Range::contains(double v) const {
  if (min && (min_exclusive ? !(v > *min) : !(v >= *min))) return false;
  if (max && (max_exclusive ? !(v < *max) : !(v <= *max))) return false;
  return true;
}

std::string Range::bounds() const { return bounds_of(*this); }

std::string Range::describe() const {
  std::string b = bounds();
  return b.empty() ? b : "must be " + b;
}

std::optional<Device> parse_config_device(std::string_view text) {
  const bool cuda_n = text.substr(0, 5) == "cuda:" && text.size() > 5 &&
                      std::all_of(text.begin() + 5, text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (text != "cpu" && text != "cpu:0" && text != "cuda" && !cuda_n) return std::nullopt;
  try {
    return Device::parse(text);
  } catch (const Error&) {  // an index past int
    return std::nullopt;
  }
}

// ---- the table --------------------------------------------------------------------------------------

namespace {

template <class>
inline constexpr bool kAlwaysFalse = false;

// The setter of a Device field: its text as a Device, or the error naming the key and what to write.
Device parse_device_setting(std::string_view key, std::string_view text) {
  if (auto d = parse_config_device(text)) return *d;
  throw Error(ErrorKind::kConfig, fmt::format("{} = \"{}\" is not a device; use cpu, cuda or cuda:N (troupe devices "
                                              "lists them)",
                                              key, text));
}

// Everything about a key except how it reaches its field (bind() adds that). Designated initialisers
// keep each row of the table readable.
struct Spec {
  std::string name;
  Range range = {};
  std::vector<OptimKind> used_by = {};
  std::string default_text = {};  // empty: printed from RunConfig{}'s value
  std::function<double(const RunConfig&)> unset_value = {};
  std::string help;
};

// Builds a key from a row and a field; the field's C++ type decides the KeyType (an enum field is a
// choice whose names come from choices.h), so the table cannot declare a type its field does not have.
template <class S, class F>
ConfigKey bind(Spec spec, S RunConfig::*section, F S::*field) {
  ConfigKey key;
  key.name = std::move(spec.name);
  key.range = spec.range;
  key.used_by = std::move(spec.used_by);
  key.default_text = std::move(spec.default_text);
  key.unset_value = std::move(spec.unset_value);
  key.help = std::move(spec.help);

  if constexpr (std::is_same_v<F, int> || std::is_same_v<F, std::vector<int>>) {
    // These limits are what make the narrowing in set() safe.
    key.int_min = INT_MIN;
    key.int_max = INT_MAX;
  }
  key.range.integral = std::is_same_v<F, int> || std::is_same_v<F, std::int64_t> || std::is_same_v<F, std::vector<int>>;
  if constexpr (std::is_same_v<F, int> || std::is_same_v<F, std::int64_t>) key.type = KeyType::kInt;
  else if constexpr (std::is_same_v<F, std::uint64_t>) key.type = KeyType::kUint64;
  else if constexpr (std::is_same_v<F, double> || std::is_same_v<F, std::optional<double>>) key.type = KeyType::kFloat;
  else if constexpr (std::is_same_v<F, bool>) key.type = KeyType::kBool;
  else if constexpr (std::is_same_v<F, std::string> || std::is_same_v<F, Device> || std::is_same_v<F, std::vector<Device>> ||
                     std::is_same_v<F, comm::CompressionSpec>)
    key.type = KeyType::kString;
  else if constexpr (Choice<F>) {
    key.type = KeyType::kEnum;
    key.choices = choice_names<F>();
  }
  else if constexpr (std::is_same_v<F, std::vector<int>>) key.type = KeyType::kIntList;
  else static_assert(kAlwaysFalse<F>, "add this field type to KeyType");

  key.set = [section, field, name = key.name](RunConfig& c, const ConfigValue& v) {
    F& f = (c.*section).*field;
    if constexpr (std::is_same_v<F, int>) f = static_cast<int>(std::get<std::int64_t>(v));
    else if constexpr (std::is_same_v<F, std::int64_t>) f = std::get<std::int64_t>(v);
    else if constexpr (std::is_same_v<F, std::uint64_t>) f = std::get<std::uint64_t>(v);
    else if constexpr (std::is_same_v<F, double> || std::is_same_v<F, std::optional<double>>) f = std::get<double>(v);
    else if constexpr (std::is_same_v<F, bool>) f = std::get<bool>(v);
    else if constexpr (std::is_same_v<F, std::string>) f = std::get<std::string>(v);
    else if constexpr (std::is_same_v<F, Device>) f = parse_device_setting(name, std::get<std::string>(v));
    else if constexpr (std::is_same_v<F, std::vector<Device>>) f = parse_stage_devices(name, std::get<std::string>(v));
    else if constexpr (std::is_same_v<F, comm::CompressionSpec>) f = comm::parse_compression_spec(std::get<std::string>(v));
    else if constexpr (Choice<F>) f = *parse_choice<F>(std::get<std::string>(v));  // checked against choices
    else {
      f.clear();
      for (auto x : std::get<std::vector<std::int64_t>>(v)) f.push_back(static_cast<int>(x));
    }
  };
  key.get = [section, field](const RunConfig& c) -> std::optional<ConfigValue> {
    const F& f = (c.*section).*field;
    if constexpr (std::is_same_v<F, int>) return ConfigValue{std::int64_t{f}};
    else if constexpr (std::is_same_v<F, std::optional<double>>) {
      if (!f) return std::nullopt;
      return ConfigValue{*f};
    } else if constexpr (std::is_same_v<F, std::vector<int>>) {
      return ConfigValue{std::vector<std::int64_t>(f.begin(), f.end())};
    } else if constexpr (Choice<F>) {
      return ConfigValue{std::string(name_of(f))};
    } else if constexpr (std::is_same_v<F, Device>) {
      return ConfigValue{f.short_str()};
    } else if constexpr (std::is_same_v<F, std::vector<Device>>) {
      return ConfigValue{stage_devices_text(f)};
    } else if constexpr (std::is_same_v<F, comm::CompressionSpec>) {
      return ConfigValue{f.text};
    } else {
      return ConfigValue{f};
    }
  };
  if (key.default_text.empty()) {
    auto v = key.get(RunConfig{});
    key.default_text = v ? config_value_to_text(*v) : "unset";
    if (key.default_text.empty()) key.default_text = "\"\"";
  }
  return key;
}

// Upper bounds. Every integer and duration has one, so that no value silently wraps or saturates on its
// way to a loop counter, an allocation or a std::chrono duration; a value past a bound is a config error.
// They are far above any real run and low enough that the products troupe forms from them stay exact:
//  - steps (train.steps, train.warmup_steps, train.eval_every): 10^12. At a millisecond per step that is
//    31 years of training, and step x batch (the data position) stays below 10^12 x 2^20 < 2^63.
//  - batch_size: 2^20 sequences per step (today's largest published batches are a few thousand).
//  - model sizes: n_layer and cnn_blocks 10^4 (GPT-3 has 96 blocks, ResNet-152 50), n_head 4096, n_embd,
//    block_size and hidden widths 2^20, cnn_channels 65536, vocab_size 2^24; a model that is in range yet too big for the machine is refused by the memory
//    check (runtime/plan/memory_estimate.h) before anything is allocated.
//  - ranks (parallel.pipeline, parallel.data, parallel.tensor, ps.shards, virtual stages): 1024 each, more than the threads
//    or processes one machine can hold.
//  - train.threads: 1024 here; the run also refuses more than 4x the machine's hardware threads.
//  - comm.timeout_s: [0.001, 86400]. Timers tick in milliseconds (a smaller value would be 0 ms: fail at
//    once), and a day is longer than any sane wait for a silent peer while keeping the deadline in
//    nanoseconds (std::chrono, int64: 292 years) far from overflow; 1e10 s wrapped to a negative wait.
//  - comm.bucket_mb: 65536 MiB (64 GiB): larger than any model that fits, and bytes fit in size_t.
constexpr double kMaxSteps = 1e12;
constexpr double kMaxBatch = 1 << 20;
constexpr double kMaxRanks = 1024;
constexpr double kMaxWidth = 1 << 20;
constexpr double kDaySeconds = 86400;

using enum OptimKind;
const std::vector<OptimKind> kAllOptims = {sgd, adam, adamw, rmsprop};

std::vector<ConfigKey> build_schema() {
  using R = RunConfig;
  using M = ModelConfig;
  using D = DataConfig;
  using T = TrainConfig;
  using O = OptimConfig;
  using P = ParallelConfig;
  using C = CommConfig;
  using S = PsConfig;
  using F = FaultConfig;
  std::vector<ConfigKey> k;
  // clang-format off
  k.push_back(bind(Spec{.name = "model.kind",
                        .help = "architecture: a byte-level language model, transformer (gpt) or stacked LSTM (lstm), "
                                "a Fashion-MNIST classifier: multi-layer perceptron (mlp) or residual "
                                "convolutional network (cnn), or a click-log recommender on parameter servers (deepfm)"},
                   &R::model, &M::kind));
  k.push_back(bind(Spec{.name = "model.n_layer", .range = between(1, 10000), .help = "transformer blocks (gpt) or LSTM layers (lstm)"},
                   &R::model, &M::n_layer));
  k.push_back(bind(Spec{.name = "model.n_head", .range = between(1, 4096),
                        .help = "attention heads per block; must divide model.n_embd (gpt)"},
                   &R::model, &M::n_head));
  k.push_back(bind(Spec{.name = "model.n_embd", .range = between(1, kMaxWidth), .help = "embedding width (gpt); embedding width and hidden size (lstm)"},
                   &R::model, &M::n_embd));
  k.push_back(bind(Spec{.name = "model.block_size", .range = between(1, kMaxWidth), .help = "context length in tokens (gpt); steps of truncated back-propagation (lstm)"},
                   &R::model, &M::block_size));
  k.push_back(bind(Spec{.name = "model.vocab_size", .range = between(1, 1 << 24), .help = "vocabulary size; 256 for bytes (gpt, lstm)"},
                   &R::model, &M::vocab_size));
  k.push_back(bind(Spec{.name = "model.mlp_hidden", .range = between(1, kMaxWidth),
                        .help = "hidden layer widths, e.g. 1024,1024 (mlp)"},
                   &R::model, &M::mlp_hidden));
  k.push_back(bind(Spec{.name = "model.cnn_channels", .range = between(1, 65536),
                        .help = "channels of each stage, e.g. 16,32,64; stages after the first halve the "
                                "resolution (cnn)"},
                   &R::model, &M::cnn_channels));
  k.push_back(bind(Spec{.name = "model.cnn_blocks", .range = between(1, 10000),
                        .help = "residual blocks in each stage, one number per model.cnn_channels entry (cnn)"},
                   &R::model, &M::cnn_blocks));
  k.push_back(bind(Spec{.name = "model.cnn_stem_stride", .range = between(1, 2),
                        .help = "stride of the stem's 3x3 conv: 1 keeps 28x28, 2 halves it before the stages (cnn)"},
                   &R::model, &M::cnn_stem_stride));
  k.push_back(bind(Spec{.name = "model.sync_batchnorm",
                        .help = "with parallel.data > 1: batch-norm statistics over the whole batch, summed across "
                                "replicas (SyncBatchNorm); false: each replica's own (as DDP) (cnn)"},
                   &R::model, &M::sync_batchnorm));
  k.push_back(bind(Spec{.name = "model.max_cardinality", .range = between(10000, 2147483647),
                        .help = "ids of the click log's largest field, its embedding table's rows; the other five "
                                "fields have 1/10, 3/100, 1/100, 1/1000 and 1/10000 as many (deepfm)"},
                   &R::model, &M::max_cardinality));
  k.push_back(bind(Spec{.name = "model.embed_dim", .range = between(1, 4096),
                        .help = "width of every categorical field's embedding, shared by the FM and deep parts (deepfm)"},
                   &R::model, &M::embed_dim));
  k.push_back(bind(Spec{.name = "model.deep_hidden", .range = between(1, kMaxWidth),
                        .help = "hidden widths of the deep part's MLP over the field embeddings, e.g. 64,32 (deepfm)"},
                   &R::model, &M::deep_hidden));
  k.push_back(bind(Spec{.name = "model.hashed_rows", .range = between(1, 2147483647),
                        .help = "rows of the first-order weight table the field ids are hashed into (deepfm)"},
                   &R::model, &M::hashed_rows));

  k.push_back(bind(Spec{.name = "data.path",
                        .help = "training data: a text file (gpt, lstm) or Fashion-MNIST directory (mlp, cnn); empty: built-in"},
                   &R::data, &D::path));
  k.push_back(bind(Spec{.name = "data.order",
                        .help = "order in which training batches are drawn"},
                   &R::data, &D::order));
  k.push_back(bind(Spec{.name = "data.test_samples", .range = between(1, 1 << 24),
                        .help = "held-out click-log samples each evaluation scores (test AUC and log-loss) (deepfm)"},
                   &R::data, &D::test_samples));

  k.push_back(bind(Spec{.name = "train.batch_size", .range = between(1, kMaxBatch),
                        .help = "sequences (gpt, lstm) or images (mlp, cnn) per optimizer step"},
                   &R::train, &T::batch_size));
  k.push_back(bind(Spec{.name = "train.steps", .range = between(0, kMaxSteps),
                        .help = "optimizer steps to run; 0: none (saving the weights then writes the initial ones)"},
                   &R::train, &T::steps));
  k.push_back(bind(Spec{.name = "train.seed", .help = "seed for initialisation and data order"},
                   &R::train, &T::seed));
  k.push_back(bind(Spec{.name = "train.threads", .range = between(0, kMaxRanks),
                        .help = "CPU threads; 0: all hardware threads; at most 4x the hardware threads"},
                   &R::train, &T::threads));
  k.push_back(bind(Spec{.name = "train.grad_clip", .range = at_least(0),
                        .help = "clip the global gradient norm to this; 0: off"},
                   &R::train, &T::grad_clip));
  k.push_back(bind(Spec{.name = "train.lr_schedule",
                        .help = "learning-rate schedule after warmup"},
                   &R::train, &T::lr_schedule));
  k.push_back(bind(Spec{.name = "train.warmup_steps", .range = between(0, kMaxSteps),
                        .help = "steps of linear warmup from 0 to optim.lr"},
                   &R::train, &T::warmup_steps));
  k.push_back(bind(Spec{.name = "train.min_lr", .range = at_least(0),
                        .help = "learning rate at the end of the cosine schedule"},
                   &R::train, &T::min_lr));
  k.push_back(bind(Spec{.name = "train.eval_every", .range = between(0, kMaxSteps),
                        .help = "evaluate every this many steps; 0: only at the end"},
                   &R::train, &T::eval_every));
  k.push_back(bind(Spec{.name = "train.eval_batches", .range = between(1, 1 << 20), .help = "batches per evaluation"},
                   &R::train, &T::eval_batches));
  k.push_back(bind(Spec{.name = "train.deterministic", .help = "bitwise-reproducible kernels (slower)"},
                   &R::train, &T::deterministic));
  k.push_back(bind(Spec{.name = "train.precision",
                        .help = "operands of the linear layers' matrix products: f32, or bf16 (rounded to nearest even, "
                                "summed in f32, as torch.autocast on the CPU; AVX512-BF16 where the CPU has it); "
                                "weights, gradients, optimizer state and the loss stay f32 (docs/performance.md)"},
                   &R::train, &T::precision));
  k.push_back(bind(Spec{.name = "train.device",
                        .help = "where stages compute: cpu, cuda (GPU 0) or cuda:N"},
                   &R::train, &T::device));
  k.push_back(bind(Spec{.name = "train.on_nonfinite",
                        .help = "a step whose loss or gradients hold NaN or Inf: stop (end the run, naming the step and "
                                "the parameter; exit 1) or skip (its update is not applied, the run goes on)"},
                   &R::train, &T::on_nonfinite));
  k.push_back(bind(Spec{.name = "train.checkpoint_dir",
                        .help = "directory for checkpoints (step-NNNNNN/, written in the background; troupe train --resume "
                                "DIR continues from the newest whole one); empty: none"},
                   &R::train, &T::checkpoint_dir));
  k.push_back(bind(Spec{.name = "train.checkpoint_every", .range = between(0, kMaxSteps),
                        .help = "write a checkpoint every this many steps; 0: only at the end of the run and when "
                                "stopped by SIGINT or SIGTERM (needs train.checkpoint_dir)"},
                   &R::train, &T::checkpoint_every));
  k.push_back(bind(Spec{.name = "train.keep_checkpoints", .range = between(1, 1000000),
                        .help = "checkpoints kept in train.checkpoint_dir, the newest; older ones are removed"},
                   &R::train, &T::keep_checkpoints));

  k.push_back(bind(Spec{.name = "optim.kind", .help = "optimizer, with torch.optim semantics"},
                   &R::optim, &O::kind));
  k.push_back(bind(Spec{.name = "optim.lr", .range = above(0), .used_by = kAllOptims,
                        .default_text = "torch default for optim.kind (rmsprop: 1e-2; sgd, adam, adamw: 1e-3)",
                        .unset_value = [](const RunConfig& c) { return c.optim.lr_or_default(); },
                        .help = "learning rate (peak, when a schedule is used)"},
                   &R::optim, &O::lr));
  k.push_back(bind(Spec{.name = "optim.beta1", .range = from_to_excl(0, 1), .used_by = {adam, adamw},
                        .default_text = "torch default for optim.kind (adam, adamw: 0.9)",
                        .unset_value = [](const RunConfig& c) { return c.optim.beta1_or_default(); },
                        .help = "decay of the first-moment average"},
                   &R::optim, &O::beta1));
  k.push_back(bind(Spec{.name = "optim.beta2", .range = from_to_excl(0, 1), .used_by = {adam, adamw},
                        .default_text = "torch default for optim.kind (adam, adamw: 0.999)",
                        .unset_value = [](const RunConfig& c) { return c.optim.beta2_or_default(); },
                        .help = "decay of the second-moment average"},
                   &R::optim, &O::beta2));
  k.push_back(bind(Spec{.name = "optim.eps", .range = at_least(0), .used_by = {adam, adamw, rmsprop},
                        .default_text = "torch default for optim.kind (adam, adamw, rmsprop: 1e-8)",
                        .unset_value = [](const RunConfig& c) { return c.optim.eps_or_default(); },
                        .help = "added to the denominator for stability"},
                   &R::optim, &O::eps));
  k.push_back(bind(Spec{.name = "optim.weight_decay", .range = at_least(0), .used_by = kAllOptims,
                        .default_text = "torch default for optim.kind (adamw: 1e-2; sgd, adam, rmsprop: 0)",
                        .unset_value = [](const RunConfig& c) { return c.optim.weight_decay_or_default(); },
                        .help = "weight decay (decoupled for adamw, L2 in the gradient otherwise)"},
                   &R::optim, &O::weight_decay));
  k.push_back(bind(Spec{.name = "optim.momentum", .range = at_least(0), .used_by = {sgd, rmsprop},
                        .default_text = "torch default for optim.kind (sgd, rmsprop: 0)",
                        .unset_value = [](const RunConfig& c) { return c.optim.momentum_or_default(); },
                        .help = "momentum factor"},
                   &R::optim, &O::momentum));
  k.push_back(bind(Spec{.name = "optim.dampening", .range = between(0, 1), .used_by = {sgd},
                        .default_text = "torch default for optim.kind (sgd: 0)",
                        .unset_value = [](const RunConfig& c) { return c.optim.dampening_or_default(); },
                        .help = "dampening of momentum"},
                   &R::optim, &O::dampening));
  k.push_back(bind(Spec{.name = "optim.nesterov", .used_by = {sgd},
                        .help = "Nesterov momentum (needs momentum > 0 and dampening 0)"},
                   &R::optim, &O::nesterov));
  k.push_back(bind(Spec{.name = "optim.alpha", .range = between(0, 1), .used_by = {rmsprop},
                        .default_text = "torch default for optim.kind (rmsprop: 0.99)",
                        .unset_value = [](const RunConfig& c) { return c.optim.alpha_or_default(); },
                        .help = "smoothing constant of the squared-gradient average"},
                   &R::optim, &O::alpha));
  k.push_back(bind(Spec{.name = "optim.centered", .used_by = {rmsprop},
                        .help = "normalise by the estimated gradient variance"},
                   &R::optim, &O::centered));
  k.push_back(bind(Spec{.name = "parallel.pipeline", .range = between(1, kMaxRanks),
                        .help = "pipeline stages, one actor each; 1: the single-device reference trainer"},
                   &R::parallel, &P::pipeline));
  k.push_back(bind(Spec{.name = "parallel.microbatches", .range = between(1, kMaxBatch),
                        .help = "micro-batches per step; must divide train.batch_size"},
                   &R::parallel, &P::microbatches));
  k.push_back(bind(Spec{.name = "parallel.schedule",
                        .help = "pipeline schedule"},
                   &R::parallel, &P::schedule));
  k.push_back(bind(Spec{.name = "parallel.virtual_stages", .range = between(1, kMaxRanks),
                        .help = "model chunks per stage (parallel.schedule = interleaved)"},
                   &R::parallel, &P::virtual_stages));
  k.push_back(bind(Spec{.name = "parallel.boundaries",
                        .help = "first layer of each (virtual) stage, e.g. 0,3,6; empty: balanced by cost"},
                   &R::parallel, &P::boundaries));
  k.push_back(bind(Spec{.name = "parallel.credits", .range = between(0, kMaxBatch),
                        .help = "flow control: activations a stage may have sent and not yet consumed downstream; "
                                "0: as the schedule sends"},
                   &R::parallel, &P::credits));
  k.push_back(bind(Spec{.name = "parallel.data", .range = between(1, kMaxRanks),
                        .help = "data-parallel replicas of every stage; each takes train.batch_size / data samples"},
                   &R::parallel, &P::data));
  k.push_back(bind(Spec{.name = "parallel.tensor", .range = between(1, kMaxRanks),
                        .help = "tensor-parallel shards of every stage: gpt and mlp layers split Megatron-style "
                                "(docs/tensor-parallel.md)"},
                   &R::parallel, &P::tensor));
  k.push_back(bind(Spec{.name = "parallel.sequence_parallel",
                        .help = "true: the gpt's LayerNorm and residual regions hold 1/parallel.tensor of each "
                                "sequence per shard (all-gather before, reduce-scatter after the split linears); "
                                "needs parallel.tensor >= 2 dividing model.block_size (docs/tensor-parallel.md)"},
                   &R::parallel, &P::sequence_parallel));
  k.push_back(bind(Spec{.name = "parallel.gradient_exchange",
                        .help = "how replicas combine gradients: ring allreduce, all-to-all reduce-scatter, or "
                                "parameter servers (ps.*)"},
                   &R::parallel, &P::gradient_exchange));
  k.push_back(bind(Spec{.name = "parallel.zero", .range = between(0, 1),
                        .help = "1: shard optimizer state over the data-parallel replicas (ZeRO-1)"},
                   &R::parallel, &P::zero));
  k.push_back(bind(Spec{.name = "parallel.placement",
                        .help = "device of each pipeline stage, e.g. cuda:0,cuda:0,cpu:0; empty: all on train.device"},
                   &R::parallel, &P::placement));
  k.push_back(bind(Spec{.name = "comm.transport",
                        .help = "data-parallel ranks as threads of one process (inproc), as local processes over "
                                "loopback TCP (tcp), or as local processes over shared memory (shm: rendezvous and "
                                "liveness over loopback TCP, data through rings in memory)"},
                   &R::comm, &C::transport));
  k.push_back(bind(Spec{.name = "comm.bucket_mb", .range = bucket_range(),
                        .help = "gradient bucket size in MiB; a bucket is reduced as soon as backward fills it"},
                   &R::comm, &C::bucket_mb));
  k.push_back(bind(Spec{.name = "comm.compression",
                        .help = "gradient compression: none, fp16, bf16, int8, topk:<fraction>, powersgd:<rank>"},
                   &R::comm, &C::compression));
  k.push_back(bind(Spec{.name = "comm.address",
                        .help = "tcp, shm: host:port where rank 0 waits for the other ranks: loopback when troupe starts "
                                "the ranks itself; any host when a launcher starts them (docs/multi-host.md)"},
                   &R::comm, &C::address));
  k.push_back(bind(Spec{.name = "comm.rank", .range = between(-1, kMaxRanks - 1),
                        .help = "this process's rank in a job whose processes a launcher starts (with "
                                "comm.world_size); -1: from torchrun's, Slurm's or OpenMPI's variables (docs/multi-host.md)"},
                   &R::comm, &C::rank));
  k.push_back(bind(Spec{.name = "comm.world_size", .range = between(0, kMaxRanks),
                        .help = "the processes of a job a launcher starts, one data-parallel rank each; 0: from the "
                                "launcher's variables; 1: one process, whatever the environment says"},
                   &R::comm, &C::world_size));
  k.push_back(bind(Spec{.name = "comm.interface",
                        .help = "network interface (e.g. eth0) whose IPv4 address ranks of a multi-host job listen on "
                                "and tell the others, as NCCL_SOCKET_IFNAME; empty: every interface for rank 0, the "
                                "route to rank 0 for the others"},
                   &R::comm, &C::interface));
  k.push_back(bind(Spec{.name = "comm.same_host",
                        .help = "a job a launcher started: how ranks on the same host talk, shm (shared memory; tcp "
                                "only between hosts) or tcp (every pair over tcp) (docs/multi-host.md)"},
                   &R::comm, &C::same_host));
  k.push_back(bind(Spec{.name = "comm.secret_file",
                        .help = "tcp: a file holding the job's secret (mode 600: refused if its group or others can read "
                                "or write it, or if it is empty); wins over TROUPE_SECRET; empty: TROUPE_SECRET "
                                "(docs/multi-host.md)"},
                   &R::comm, &C::secret_file));
  k.push_back(bind(Spec{.name = "comm.integrity",
                        .help = "tcp, shm: authenticate every frame of a link after the handshake (AES-256-GCM over the "
                                "frame and its sequence number), so a changed, injected, replayed, reordered or dropped "
                                "frame breaks the link: auto (links to a peer not on loopback), on (every link), off (no "
                                "link asks; a peer that asks still gets it) (docs/multi-host.md)"},
                   &R::comm, &C::integrity));
  k.push_back(bind(Spec{.name = "comm.encrypt",
                        .help = "tcp, shm: encrypt every link's frame payloads too (AES-256-GCM), whatever comm.integrity "
                                "says; a link is encrypted when either end asks"},
                   &R::comm, &C::encrypt));
  k.push_back(bind(Spec{.name = "comm.timeout_s", .range = between(0.001, kDaySeconds),
                        .help = "seconds a collective waits for a silent peer before failing; a rank process troupe "
                                "started itself that sends no heartbeat for half of it is killed and reported as hung"},
                   &R::comm, &C::timeout_s));
  k.push_back(bind(Spec{.name = "comm.poll_us", .range = between(0, 100000),
                        .help = "microseconds a stage actor out of work mid-step polls for its next message before "
                                "its thread sleeps: hops of ~0.5 us instead of a ~5 us wake-up, for at most this "
                                "much CPU per idle period (a tensor-shard actor after each answer, and its requester "
                                "for the answers, likewise); 0: sleep at once"},
                   &R::comm, &C::poll_us));
  k.push_back(bind(Spec{.name = "ps.shards", .range = between(1, kMaxRanks),
                        .help = "parameter-server actors; parameters and optimizer state are split across them"},
                   &R::ps, &S::shards));
  k.push_back(bind(Spec{.name = "ps.mode",
                        .help = "sync: every step waits for all workers; async: none; ssp: bounded staleness"},
                   &R::ps, &S::mode));
  k.push_back(bind(Spec{.name = "ps.staleness", .range = between(0, 1000000),
                        .help = "ps.mode = ssp: steps the fastest worker may run ahead of the slowest"},
                   &R::ps, &S::staleness));
  k.push_back(bind(Spec{.name = "ps.max_restarts", .range = between(0, 1000),
                        .help = "comm.transport = tcp: worker processes rank 0 restarts after they die or hang (found by "
                                "their heartbeats) before the run fails"},
                   &R::ps, &S::max_restarts));
  k.push_back(bind(Spec{.name = "ps.shard_snapshots",
                        .help = "ps.mode = sync, workers as threads: each shard keeps a copy of its parameters and "
                                "optimizer state at every step boundary, so a failed shard actor is restarted from it "
                                "(under fault.max_restarts) instead of ending the run; off by default, as the copy is of "
                                "whole tables (a fault.inject shard clause turns it on for the drill)"},
                   &R::ps, &S::shard_snapshots));
  k.push_back(bind(Spec{.name = "fault.max_restarts", .range = between(0, 1000),
                        .help = "restarts of a failed stage, optimizer-state, tensor-shard, parameter-server "
                                "worker or (ps.shard_snapshots) parameter-server shard actor its supervisor makes within "
                                "fault.restart_window_s (the interrupted step is re-run), and of data-parallel rank "
                                "processes rank 0 makes (comm.transport = tcp); one more stops the run. 0: none, and no "
                                "step-boundary snapshot is kept"},
                   &R::fault, &F::max_restarts));
  k.push_back(bind(Spec{.name = "fault.restart_window_s", .range = between(0.001, kDaySeconds),
                        .help = "seconds of the sliding window fault.max_restarts counts restarts in"},
                   &R::fault, &F::restart_window_s));
  k.push_back(bind(Spec{.name = "fault.inject",
                        .help = "faults the run injects into itself, to rehearse recovery: clauses such as \"kill stage 1 "
                                "at step 7; throw stage 0 at step 3; nan stage 0 at step 5; kill optimizer 1 at step 2; "
                                "throw shard 1 of stage 0 at step 4; stall rank 1 at step 4; throw worker 1 at step 3\" "
                                "(docs/failures.md)"},
                   &R::fault, &F::inject));
  // clang-format on
  return k;
}

}  // namespace

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = build_schema();
  return schema;
}

const ConfigKey* find_config_key(std::string_view name) {
  for (const auto& key : config_schema())
    if (key.name == name) return &key;
  return nullptr;
}

std::string echo_text(std::string_view text, std::size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  return fmt::format("{}... ({} characters)", text.substr(0, max_chars), text.size());
}

// ---- suggestions ------------------------------------------------------------------------------------

namespace {

// Optimal string alignment distance: Levenshtein plus adjacent transpositions, which are the commonest
// typo ("modle").
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// edit_distance(a, b) when it can be <= limit, else limit + 1. The distance is at least the difference
// in length, so strings whose lengths differ by more than `limit` are never aligned: a 10 MB unknown key
// costs a comparison of lengths per key instead of a 10 MB x 27 table (minutes and gigabytes).
std::size_t bounded_distance(std::string_view a, std::string_view b, std::size_t limit) {
  const std::size_t gap = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (gap > limit) return limit + 1;
  return edit_distance(a, b);
}

}  // namespace

std::string closest_config_key(std::string_view name) {
  // A third of the length, capped at 3: "train.step" finds "train.steps", "foo" finds nothing.
  std::size_t limit = std::clamp<std::size_t>(name.size() / 3, 1, 3);
  const ConfigKey* best = nullptr;
  std::size_t best_d = limit + 1;
  for (const auto& key : config_schema()) {
    std::size_t d = bounded_distance(name, key.name, limit);
    // A key without its section ("steps") is compared with the part after the dot too, and a key under
    // one section too many ("train.optim.kind", a dotted key inside [train]) without its first part.
    std::size_t dot = name.find('.');
    if (dot == std::string_view::npos)
      d = std::min(d, bounded_distance(name, std::string_view(key.name).substr(key.name.find('.') + 1), limit));
    else if (name.find('.', dot + 1) != std::string_view::npos)
      d = std::min(d, bounded_distance(name.substr(dot + 1), key.name, limit));
    if (d < best_d) best_d = d, best = &key;
  }
  return best ? best->name : std::string{};
}

void throw_unknown_key(std::string_view name) {
  std::string hint = closest_config_key(name);
  if (!hint.empty())
    throw Error(ErrorKind::kConfig, fmt::format("unknown config key '{}' (did you mean '{}'?)", echo_text(name), hint));
  // No close key: list the keys of the section named, or the sections. The message speaks of keys only,
  // so that it reads the same to a library caller and on the command line.
  const std::string_view section = name.substr(0, name.find('.'));
  std::string keys, sections;
  for (const ConfigKey& key : config_schema()) {
    std::string_view s = std::string_view(key.name).substr(0, key.name.find('.'));
    if (s == section && name.find('.') != std::string_view::npos) keys += (keys.empty() ? "" : ", ") + key.name;
    if (sections.find(std::string(s) + ".*") == std::string::npos)
      sections += (sections.empty() ? "" : ", ") + std::string(s) + ".*";
  }
  throw Error(ErrorKind::kConfig, keys.empty() ? fmt::format("unknown config key '{}' (the keys are {})", echo_text(name), sections)
                                               : fmt::format("unknown config key '{}' ({} has {})", echo_text(name),
                                                             echo_text(section) + ".*", keys));
}

// ---- values -----------------------------------------------------------------------------------------

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

[[noreturn]] void reject(const ConfigKey& key, std::string_view shown, std::string_view what) {
  throw Error(ErrorKind::kConfig, fmt::format("{} = {}: {}", key.name, shown, what));
}

std::string quoted(std::string_view text) { return fmt::format("'{}'", echo_text(text)); }

// Text that reads as a whole decimal integer, whatever its size: "99999999999999999999999", "-3".
bool looks_integral(std::string_view s) {
  s = trim(s);
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// An integer too large for 64 bits is out of range, not "not an integer": say which range.
[[noreturn]] void reject_integer(const ConfigKey& key, std::string_view text, std::string_view what) {
  if (looks_integral(text)) {
    std::string range = key.range.describe();
    if (range.empty()) range = fmt::format("must be in [{}, {}]", key.int_min, key.int_max);
    reject(key, echo_text(trim(text)), range);
  }
  reject(key, quoted(text), what);
}

// Parses a whole integer; from_chars alone would accept "12abc" as 12 and rejects a leading '+'.
template <class Int>
std::optional<Int> parse_int(std::string_view s) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  Int v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? std::string(sep) : "") + items[i];
  return out;
}

}  // namespace

std::string used_by_names(const ConfigKey& key) {
  std::vector<std::string> names;
  for (OptimKind k : key.used_by) names.emplace_back(name_of(k));
  return join(names, ", ");
}


ConfigValue parse_config_text(const ConfigKey& key, std::string_view text) {
  ConfigValue value;
  switch (key.type) {
    case KeyType::kInt: {
      auto v = parse_int<std::int64_t>(text);
      if (!v) reject_integer(key, text, "expected an integer");
      value = *v;
      break;
    }
    case KeyType::kUint64: {
      auto v = parse_int<std::uint64_t>(text);
      if (!v && looks_integral(text) && trim(text).front() != '-')
        reject(key, echo_text(trim(text)), "must be in [0, 2^64)");
      if (!v) reject(key, quoted(text), "expected an integer in [0, 2^64)");
      value = *v;
      break;
    }
    case KeyType::kFloat: {
      std::string_view s = trim(text);
      if (!s.empty() && s.front() == '+') s.remove_prefix(1);
      double v = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) reject(key, quoted(text), "expected a number");
      value = v;
      break;
    }
    case KeyType::kBool: {
      std::string_view s = trim(text);
      if (s == "true" || s == "1") value = true;
      else if (s == "false" || s == "0") value = false;
      else reject(key, quoted(text), "expected true, false, 1 or 0");
      break;
    }
    case KeyType::kString:
    case KeyType::kEnum:
      value = std::string(text);
      break;
    case KeyType::kIntList: {
      std::vector<std::int64_t> list;
      std::string_view rest = trim(text);
      // "" is the empty list; otherwise every comma separates two integers.
      while (!rest.empty()) {
        std::size_t comma = rest.find(',');
        auto v = parse_int<std::int64_t>(rest.substr(0, comma));
        if (!v && looks_integral(rest.substr(0, comma)))
          reject(key, quoted(text), fmt::format("each element {} (found {})", key.range.describe(),
                                                echo_text(trim(rest.substr(0, comma)))));
        if (!v) reject(key, quoted(text), "expected comma-separated integers, e.g. 1024,1024");
        list.push_back(*v);
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
        if (trim(rest).empty()) reject(key, quoted(text), "expected comma-separated integers, e.g. 1024,1024");
      }
      value = std::move(list);
      break;
    }
  }
  check_config_value(key, value);
  return value;
}

void check_config_value(const ConfigKey& key, const ConfigValue& value) {
  std::string shown = config_value_to_text(value);
  if (key.type == KeyType::kString || key.type == KeyType::kEnum) shown = quoted(shown);
  switch (key.type) {
    case KeyType::kInt: {
      std::int64_t v = std::get<std::int64_t>(value);
      if (!key.range.contains(static_cast<double>(v))) reject(key, shown, key.range.describe());
      if (v > key.int_max) reject(key, shown, fmt::format("must be <= {}", key.int_max));
      if (v < key.int_min) reject(key, shown, fmt::format("must be >= {}", key.int_min));
      break;
    }
    case KeyType::kFloat: {
      double v = std::get<double>(value);
      if (!std::isfinite(v)) reject(key, shown, "expected a finite number");
      if (!key.range.contains(v)) reject(key, shown, key.range.describe());
      break;
    }
    case KeyType::kEnum:
      if (std::find(key.choices.begin(), key.choices.end(), std::get<std::string>(value)) == key.choices.end())
        reject(key, shown, "expected one of " + join(key.choices, ", "));
      break;
    case KeyType::kIntList:
      for (auto x : std::get<std::vector<std::int64_t>>(value)) {
        if (!key.range.contains(static_cast<double>(x)))
          reject(key, shown, fmt::format("each element {} (found {})", key.range.describe(), x));
        if (x > key.int_max) reject(key, shown, fmt::format("each element must be <= {} (found {})", key.int_max, x));
        if (x < key.int_min) reject(key, shown, fmt::format("each element must be >= {} (found {})", key.int_min, x));
      }
      break;
    case KeyType::kUint64:
    case KeyType::kBool:
    case KeyType::kString:
      break;
  }
}

namespace {

// Shortest text that reads back as the same double ({fmt} guarantees the round trip); TOML needs a '.'
// or an exponent to make it a float, though the loader would accept the integer form too.
std::string float_text(double v) {
  std::string s = fmt::format("{}", v);
  if (std::isfinite(v) && s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04X}", c);
        else out += ch;
    }
  }
  return out + "\"";
}

}  // namespace

std::string config_value_to_toml(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::int64_t>) return std::to_string(v);
        else if constexpr (std::is_same_v<V, std::uint64_t>) {
          if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return fmt::format("\"{}\"", v);
          return std::to_string(v);
        } else if constexpr (std::is_same_v<V, double>) return float_text(v);
        else if constexpr (std::is_same_v<V, bool>) return v ? "true" : "false";
        else if constexpr (std::is_same_v<V, std::string>) return toml_string(v);
        else return "[" + fmt::format("{}", fmt::join(v, ", ")) + "]";
      },
      value);
}

std::string config_value_to_text(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::int64_t> || std::is_same_v<V, std::uint64_t>) return std::to_string(v);
        else if constexpr (std::is_same_v<V, double>) return fmt::format("{}", v);
        else if constexpr (std::is_same_v<V, bool>) return v ? "true" : "false";
        else if constexpr (std::is_same_v<V, std::string>) return v;
        else return fmt::format("{}", fmt::join(v, ","));
      },
      value);
}

std::string config_type_name(const ConfigKey& key) {
  switch (key.type) {
    case KeyType::kInt: return "int";
    case KeyType::kUint64: return "uint64";
    case KeyType::kFloat: return "float";
    case KeyType::kBool: return "bool";
    case KeyType::kString: return "string";
    case KeyType::kEnum: return "enum";
    case KeyType::kIntList: return "int list";
  }
  return "?";
}

}  // namespace troupe
