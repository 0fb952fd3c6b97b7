// Tests of the config schema and loader: precedence, every key, round trip, and each class of error message.
#include <catch2/catch.hpp>

#include "tests/error_of.h"

#include "temp_dir.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "runtime/config/config_loader.h"
#include "runtime/config/config_schema.h"
#include "runtime/error.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {



std::string set_error(std::vector<std::string> sets) {
  return config_error([&] { load_config(std::nullopt, sets); });
}

// A valid value, different from the default, for every key; the "every key" test fails when a key is
// added to the schema without one here.
const std::map<std::string, std::string> kSamples = {
    {"model.kind", "mlp"},
    {"model.n_layer", "6"},
    {"model.n_head", "8"},
    {"model.n_embd", "512"},
    {"model.block_size", "64"},
    {"model.vocab_size", "512"},
    {"model.mlp_hidden", "300, 100"},
    {"model.cnn_channels", "8, 16"},
    {"model.cnn_blocks", "2, 2, 2"},
    {"model.cnn_stem_stride", "2"},
    {"model.sync_batchnorm", "true"},
    {"model.max_cardinality", "20000"},
    {"model.embed_dim", "4"},
    {"model.deep_hidden", "16,8"},
    {"model.hashed_rows", "4096"},
    {"data.path", "/data/my corpus \"v2\".txt"},
    {"data.order", "sequential"},
    {"data.test_samples", "2048"},
    {"train.batch_size", "32"},
    {"train.steps", "1000"},
    {"train.seed", "18446744073709551615"},  // above TOML's integer range: exercises the string form
    {"train.threads", "3"},
    {"train.grad_clip", "0.5"},
    {"train.lr_schedule", "cosine"},
    {"train.warmup_steps", "10"},
    {"train.min_lr", "1e-5"},
    {"train.eval_every", "0"},
    {"train.eval_batches", "2"},
    {"train.deterministic", "1"},
    {"train.precision", "bf16"},
    {"optim.kind", "rmsprop"},
    {"optim.lr", "3e-4"},
    {"optim.beta1", "0.8"},
    {"optim.beta2", "0.95"},
    {"optim.eps", "1e-6"},
    {"optim.weight_decay", "0.1"},
    {"optim.momentum", "0.9"},
    {"optim.dampening", "0.1"},
    {"optim.nesterov", "true"},
    {"optim.alpha", "0.9"},
    {"optim.centered", "true"},
    {"parallel.pipeline", "2"},
    {"parallel.microbatches", "4"},
    {"parallel.schedule", "gpipe"},
    {"parallel.virtual_stages", "2"},
    {"parallel.boundaries", "0,3"},
    {"parallel.credits", "2"},
    {"parallel.data", "2"},
    {"parallel.tensor", "2"},
    {"parallel.sequence_parallel", "1"},
    {"parallel.gradient_exchange", "alltoall"},
    {"parallel.zero", "1"},
    {"parallel.placement", "cuda:0"},
    {"comm.transport", "tcp"},
    {"comm.bucket_mb", "0.5"},
    {"comm.compression", "topk:0.01"},
    {"comm.address", "127.0.0.2:1234"},
    {"comm.rank", "2"},
    {"comm.world_size", "4"},
    {"comm.same_host", "tcp"},
    {"comm.interface", "eth1"},
    {"comm.secret_file", "/run/troupe.secret"},
    {"comm.integrity", "on"},
    {"comm.encrypt", "true"},
    {"comm.timeout_s", "5"},
    {"comm.poll_us", "0"},
    {"ps.shards", "3"},
    {"ps.mode", "async"},
    {"ps.staleness", "2"},
    {"ps.max_restarts", "5"},
    {"ps.shard_snapshots", "true"},
    {"train.device", "cuda:1"},
    {"train.on_nonfinite", "skip"},
    {"train.checkpoint_dir", "runs/ckpt"},
    {"train.checkpoint_every", "50"},
    {"train.keep_checkpoints", "5"},
    {"fault.max_restarts", "5"},
    {"fault.restart_window_s", "30"},
    {"fault.inject", "kill stage 1 at step 2"},
};

RunConfig round_trip(const RunConfig& config) {
  TempDir dir;
  return load_config(dir.write("effective.toml", config_to_toml(config)), {});
}

}  // namespace

TEST_CASE("defaults load and validate", "[config]") {
  CHECK(load_config(std::nullopt, {}) == RunConfig{});
  CHECK_NOTHROW(validate(RunConfig{}));
  CHECK(load_config(std::nullopt, {"train.steps=0"}).train.steps == 0);  // e.g. to save the initial weights
}

TEST_CASE("a TOML file with tables and dotted keys", "[config]") {
  TempDir dir;
  std::string path = dir.write("run.toml", R"(
data = { order = "sequential" }
train.steps = 50
train.lr_schedule = "cosine"
train.min_lr = 0    # an integer is accepted for a float

[model]
kind = "mlp"
mlp_hidden = [512, 256, 128]

[optim]
kind = "sgd"
lr = 3e-4
nesterov = true
momentum = 0.9
)");
  RunConfig c = load_config(path, {});
  CHECK(c.model.kind == ModelKind::mlp);
  CHECK(c.model.mlp_hidden == std::vector<int>{512, 256, 128});
  CHECK(c.data.order == DataOrder::sequential);
  CHECK(c.train.steps == 50);
  CHECK(c.train.lr_schedule == LrScheduleKind::cosine);
  CHECK(c.train.min_lr == 0.0);
  CHECK(c.optim.kind == OptimKind::sgd);
  CHECK(c.optim.lr == 3e-4);
  CHECK(c.optim.nesterov);
  CHECK(c.optim.momentum == 0.9);
  CHECK(c.train.batch_size == RunConfig{}.train.batch_size);  // untouched keys keep their default
}

TEST_CASE("precedence: defaults, then the file, then each --set in order", "[config]") {
  TempDir dir;
  std::string path = dir.write("run.toml", "[train]\nsteps = 50\nbatch_size = 4\n");
  RunConfig c = load_config(path, {"train.steps=70", "train.seed = 7", "train.steps=90"});
  CHECK(c.train.steps == 90);      // the later --set wins
  CHECK(c.train.batch_size == 4);  // the file beats the default
  CHECK(c.train.seed == 7);        // spaces around '=' are fine
  CHECK(c.train.eval_batches == RunConfig{}.train.eval_batches);

  // Validation runs once, at the end: a --set may repair what the file alone gets wrong.
  std::string bad = dir.write("bad.toml", "[model]\nn_embd = 250\n");
  CHECK_THROWS_AS(load_config(bad, {}), Error);
  CHECK(load_config(bad, {"model.n_embd=256"}).model.n_embd == 256);
}

TEST_CASE("every schema key can be set, and round-trips through config_to_toml", "[config]") {
  std::set<std::string> names;
  for (const auto& key : config_schema()) {
    INFO(key.name);
    CHECK(names.insert(key.name).second);  // no key twice
    CHECK(find_config_key(key.name) == &key);
    CHECK_FALSE(key.help.empty());
    CHECK_FALSE(key.default_text.empty());
    REQUIRE(kSamples.count(key.name));
    const std::string& sample = kSamples.at(key.name);

    // Keys read only by some optimizers are set together with one that reads them; nesterov also needs
    // momentum (torch's rule).
    std::vector<std::string> sets;
    if (!key.used_by.empty() && key.name != "optim.lr" && key.name != "optim.weight_decay")
      sets.push_back("optim.kind=" + std::string(name_of(key.used_by.front())));
    if (key.name == "optim.nesterov") sets.push_back("optim.momentum=0.9");
    if (key.name == "parallel.virtual_stages") sets.push_back("parallel.schedule=interleaved");
    if (key.name.rfind("ps.", 0) == 0) sets.push_back("parallel.gradient_exchange=ps");
    if (key.name == "ps.staleness") sets.push_back("ps.mode=ssp");
    if (key.name == "train.checkpoint_every") sets.push_back("train.checkpoint_dir=ck");
    if (key.name == "fault.inject") sets.push_back("parallel.pipeline=2");  // a stage 1 to fail
    if (key.name == "model.sync_batchnorm") sets.push_back("model.kind=cnn");  // the model with batch norm
    if (key.name == "parallel.sequence_parallel") sets.push_back("parallel.tensor=2");  // a group to split over
    sets.push_back(key.name + "=" + sample);

    RunConfig c = load_config(std::nullopt, sets);
    ConfigValue expected = parse_config_text(key, sample);
    REQUIRE(key.get(c).has_value());
    CHECK(*key.get(c) == expected);
    CHECK(key.get(c) != key.get(RunConfig{}));
    CHECK(round_trip(c) == c);
  }
  CHECK(names.size() == kSamples.size());
}

TEST_CASE("round trip of a config far from the defaults", "[config]") {
  RunConfig c;
  c.model = {ModelKind::gpt, 2, 3, 96, 17, 300, {}};
  c.data = {"corpus/шекспир.txt", DataOrder::sequential};
  c.train.batch_size = 5;
  c.train.steps = 1'000'000'000'000;
  c.train.seed = 0;
  c.train.grad_clip = 0.1 + 0.2;  // not a short decimal: must survive text exactly
  c.train.lr_schedule = LrScheduleKind::cosine;
  c.train.warmup_steps = 1000;
  c.train.min_lr = 1e-7;
  c.train.deterministic = true;
  c.optim.kind = OptimKind::adam;
  c.optim.lr = 6e-4;
  c.optim.beta1 = 0.0;
  c.optim.beta2 = 0.95;
  c.optim.eps = 1e-12;
  c.optim.weight_decay = 0.0;
  REQUIRE_NOTHROW(validate(c));
  RunConfig back = round_trip(c);
  CHECK(back == c);
  CHECK(back.optim.momentum == std::nullopt);  // unset stays unset

  std::string text = config_to_toml(c);
  CHECK(load_config(std::nullopt, {"model.mlp_hidden="}).model.mlp_hidden.empty());
  CHECK_THAT(text, Contains("[model]\nkind = \"gpt\"\nn_layer = 2\n"));
  CHECK_THAT(text, Contains("mlp_hidden = []"));
  CHECK_THAT(text, Contains("steps = 1000000000000"));
  CHECK_THAT(text, Contains("grad_clip = 0.30000000000000004"));
  CHECK_THAT(text, Contains("# momentum is unset (not used by adam)"));
}

TEST_CASE("config_to_toml shows the torch default in effect for unset optim keys", "[config]") {
  RunConfig c;
  c.optim.kind = OptimKind::rmsprop;
  std::string text = config_to_toml(c);
  CHECK_THAT(text, Contains("[optim]\nkind = \"rmsprop\"\n"));
  CHECK_THAT(text, Contains("# lr = 0.01  (unset: torch default for rmsprop)"));
  CHECK_THAT(text, Contains("# alpha = 0.99  (unset: torch default for rmsprop)"));
  CHECK_THAT(text, Contains("# beta1 is unset (not used by rmsprop)"));
  CHECK(round_trip(c) == c);
}

TEST_CASE("text values: ints, floats, bools, lists", "[config]") {
  CHECK(load_config(std::nullopt, {"optim.lr=3e-4"}).optim.lr == 3e-4);
  CHECK(load_config(std::nullopt, {"optim.lr=.5"}).optim.lr == 0.5);
  CHECK(load_config(std::nullopt, {"train.steps=+12"}).train.steps == 12);
  CHECK(load_config(std::nullopt, {"train.deterministic=true"}).train.deterministic);
  CHECK(load_config(std::nullopt, {"train.deterministic=1"}).train.deterministic);
  CHECK_FALSE(load_config(std::nullopt, {"train.deterministic=1", "train.deterministic=0"}).train.deterministic);
  CHECK_FALSE(load_config(std::nullopt, {"train.deterministic=false"}).train.deterministic);
  CHECK(load_config(std::nullopt, {"model.mlp_hidden=1024,1024,10"}).model.mlp_hidden == std::vector<int>{1024, 1024, 10});
  CHECK(load_config(std::nullopt, {"model.mlp_hidden= 7 "}).model.mlp_hidden == std::vector<int>{7});
  CHECK(load_config(std::nullopt, {"train.seed=18446744073709551615"}).train.seed == 18446744073709551615ull);
  CHECK(load_config(std::nullopt, {"data.path=a=b.txt"}).data.path == "a=b.txt");  // split at the first '='

  TempDir dir;
  RunConfig c = load_config(dir.write("t.toml", "[model]\nmlp_hidden = \"64,32\"\n[train]\nseed = \"123\"\n"), {});
  CHECK(c.model.mlp_hidden == std::vector<int>{64, 32});
  CHECK(c.train.seed == 123);
}

TEST_CASE("error: unknown key, with the closest known key suggested", "[config]") {
  CHECK_THAT(set_error({"train.step=5"}), Contains("unknown config key 'train.step' (did you mean 'train.steps'?)"));
  // A library caller's overrides are "override"s; the CLI names them --set (tests/test_cli.cpp).
  CHECK_THAT(set_error({"train.step=5"}), Contains("override: "));
  CHECK_THAT(set_error({"train.step=5"}), !Contains("--set"));
  CHECK_THAT(set_error({"steps=5"}), Contains("did you mean 'train.steps'?"));
  CHECK_THAT(set_error({"optim.learning_rate=1"}), Contains("unknown config key 'optim.learning_rate'"));
  // Without a close key the message lists the keys of the section, or the sections, never a CLI flag.
  CHECK_THAT(set_error({"zzz=1"}), Contains("unknown config key 'zzz' (the keys are model.*, data.*, train.*"));
  CHECK_THAT(set_error({"model.zzzzzzzzz=1"}),
             Contains("unknown config key 'model.zzzzzzzzz' (model.* has model.kind, model.n_layer,"));
  CHECK_THAT(set_error({"zzz=1"}), !Contains("--help"));
  CHECK(closest_config_key("modle.n_layer") == "model.n_layer");
  CHECK(closest_config_key("optim.betas1") == "optim.beta1");
  CHECK(closest_config_key("lr") == "optim.lr");
  CHECK(closest_config_key("completely.different") == "");

  TempDir dir;
  std::string path = dir.write("typo.toml", "[modle]\nn_layer = 3\n");
  std::string msg = config_error([&] { load_config(path, {}); });
  CHECK_THAT(msg, Contains(path + ":2:"));
  CHECK_THAT(msg, Contains("unknown config key 'modle.n_layer' (did you mean 'model.n_layer'?)"));

  // A table where a value belongs, and a key below a leaf.
  CHECK_THAT(config_error([&] { load_config(dir.write("t.toml", "[model.kind]\nx = 1\n"), {}); }),
             Contains("model.kind = a table: expected one of gpt, mlp"));
  CHECK_THAT(config_error([&] { load_config(dir.write("t.toml", "[train]\noptim.kind = \"sgd\"\n"), {}); }),
             Contains("unknown config key 'train.optim.kind' (did you mean 'optim.kind'?)"));
  CHECK_THAT(config_error([&] { load_config(dir.write("t.toml", "[extra]\n"), {}); }),
             Contains("unknown config key 'extra'"));
}

TEST_CASE("error: wrong type names the key, the value and the expected type", "[config]") {
  CHECK_THAT(set_error({"train.steps=abc"}), Contains("train.steps = 'abc': expected an integer"));
  CHECK_THAT(set_error({"train.steps=12abc"}), Contains("train.steps = '12abc': expected an integer"));
  CHECK_THAT(set_error({"train.steps=1.5"}), Contains("train.steps = '1.5': expected an integer"));
  CHECK_THAT(set_error({"train.steps="}), Contains("train.steps = '': expected an integer"));
  CHECK_THAT(set_error({"train.seed=-1"}), Contains("train.seed = '-1': expected an integer in [0, 2^64)"));
  CHECK_THAT(set_error({"optim.lr=fast"}), Contains("optim.lr = 'fast': expected a number"));
  CHECK_THAT(set_error({"optim.lr=nan"}), Contains("optim.lr = nan: expected a finite number"));
  CHECK_THAT(set_error({"train.deterministic=yes"}), Contains("train.deterministic = 'yes': expected true, false, 1 or 0"));
  CHECK_THAT(set_error({"model.mlp_hidden=10,,3"}), Contains("model.mlp_hidden = '10,,3': expected comma-separated integers"));
  CHECK_THAT(set_error({"model.mlp_hidden=10,"}), Contains("expected comma-separated integers"));

  TempDir dir;
  std::string path = dir.write("types.toml", "[train]\nsteps = \"abc\"\n");
  std::string msg = config_error([&] { load_config(path, {}); });
  CHECK_THAT(msg, Contains(path + ":2:9: train.steps = 'abc': expected an integer"));
  CHECK_THAT(config_error([&] { load_config(dir.write("f.toml", "train.steps = 2.5\n"), {}); }),
             Contains("train.steps = 2.5: expected an integer"));
  CHECK_THAT(config_error([&] { load_config(dir.write("b.toml", "train.deterministic = 1\n"), {}); }),
             Contains("train.deterministic = 1: expected true or false"));
  CHECK_THAT(config_error([&] { load_config(dir.write("l.toml", "model.mlp_hidden = [1, \"x\"]\n"), {}); }),
             Contains("model.mlp_hidden = [ 1, 'x' ]: expected a list of integers"));
  CHECK_THAT(config_error([&] { load_config(dir.write("s.toml", "data.path = 3\n"), {}); }),
             Contains("data.path = 3: expected a string"));
}

TEST_CASE("error: out of range states the allowed range", "[config]") {
  CHECK_THAT(set_error({"train.batch_size=0"}), Contains("train.batch_size = 0: must be >= 1"));
  CHECK_THAT(set_error({"train.threads=-2"}), Contains("train.threads = -2: must be >= 0"));
  CHECK_THAT(set_error({"train.steps=-1"}), Contains("train.steps = -1: must be >= 0"));
  CHECK_THAT(set_error({"optim.lr=0"}), Contains("optim.lr = 0: must be > 0"));
  CHECK_THAT(set_error({"optim.beta1=1"}), Contains("optim.beta1 = 1: must be in [0, 1)"));
  CHECK_THAT(set_error({"optim.dampening=1.5"}), Contains("optim.dampening = 1.5: must be in [0, 1]"));
  CHECK_THAT(set_error({"model.n_layer=3000000000"}), Contains("model.n_layer = 3000000000: must be >= 1 and <= 10000"));
  CHECK_THAT(set_error({"model.mlp_hidden=64,0"}), Contains("model.mlp_hidden = 64,0: each element must be >= 1 and <= 1048576 (found 0)"));

  TempDir dir;
  std::string path = dir.write("range.toml", "[train]\n\nbatch_size = -3\n");
  CHECK_THAT(config_error([&] { load_config(path, {}); }), Contains(path + ":3:14: train.batch_size = -3: must be >= 1"));
  CHECK_THAT(config_error([&] { load_config(dir.write("inf.toml", "optim.lr = inf\n"), {}); }),
             Contains("optim.lr = inf: expected a finite number"));
}

TEST_CASE("every integer and duration has an upper bound, and a value past it is an error, never a wrap", "[config]") {
  for (const ConfigKey& key : config_schema()) {
    if (key.type != KeyType::kInt && key.type != KeyType::kIntList && key.name != "comm.timeout_s") continue;
    INFO(key.name);
    REQUIRE(key.range.max.has_value());
    CHECK(*key.range.max <= static_cast<double>(key.int_max));  // the field can hold every value in range
    CHECK_THAT(config_help(), Contains(key.range.bounds()));
  }
  // Integers too large for 64 bits name the range instead of saturating (CLI11 and strtoll saturated).
  CHECK_THAT(set_error({"train.steps=99999999999999999999999"}),
             Contains("train.steps = 99999999999999999999999: must be >= 0 and <= 1000000000000"));
  CHECK_THAT(set_error({"train.steps=1000000000001"}), Contains("must be >= 0 and <= 1000000000000"));
  CHECK(load_config(std::nullopt, {"train.steps=1000000000000"}).train.steps == 1'000'000'000'000);
  CHECK_THAT(set_error({"train.seed=99999999999999999999999"}),
             Contains("train.seed = 99999999999999999999999: must be in [0, 2^64)"));
  CHECK_THAT(set_error({"model.mlp_hidden=8,99999999999999999999"}),
             Contains("each element must be >= 1 and <= 1048576 (found 99999999999999999999)"));
  // A timeout of 1e10 s became a negative std::chrono duration and an internal error.
  CHECK_THAT(set_error({"comm.timeout_s=1e10"}), Contains("comm.timeout_s = 10000000000: must be in [0.001, 86400]"));
  CHECK_THAT(set_error({"comm.timeout_s=0.0001"}), Contains("must be in [0.001, 86400]"));
  CHECK(load_config(std::nullopt, {"comm.timeout_s=86400"}).comm.timeout_s == 86400.0);
  CHECK_THAT(set_error({"comm.bucket_mb=1e300"}), Contains("comm.bucket_mb = 1e+300: must be in (0, 65536]"));
  CHECK_THAT(set_error({"train.threads=100000"}), Contains("train.threads = 100000: must be >= 0 and <= 1024"));
  TempDir dir;
  CHECK_THAT(config_error([&] { load_config(dir.write("t.toml", "[comm]\ntimeout_s = 1e10\n"), {}); }),
             Contains("comm.timeout_s = 10000000000: must be in [0.001, 86400]"));
}

TEST_CASE("error: a huge unknown key is answered at once, and echoed truncated with its length", "[config]") {
  // A 10 MB key took 3 min 47 s and 2.7 GB (a 10M x 27 edit-distance table per key), and the message was
  // 10 MB long. Lengths that differ by more than the typo limit are never compared.
  const std::string huge(10 << 20, 'x');
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = set_error({huge + "=1"});
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(msg.size() < 400);
  CHECK_THAT(msg, Contains("unknown config key 'xxxx") && Contains("... (10485760 characters)"));
  CHECK_THAT(set_error({"train.steps=" + huge}), Contains("(10485760 characters)"));
  CHECK(set_error({"train.steps=" + huge}).size() < 400);
  // The suggestions themselves are unchanged: the one-section-too-many form still finds its key.
  CHECK(closest_config_key("train.optim.kind") == "optim.kind");
  CHECK(closest_config_key(std::string(100, 'a') + ".train.steps") == "train.steps");
  CHECK(closest_config_key("parallel.gradient_exchang") == "parallel.gradient_exchange");
}

TEST_CASE("error: unknown enum value lists the allowed ones", "[config]") {
  CHECK_THAT(set_error({"optim.kind=adamx"}), Contains("optim.kind = 'adamx': expected one of sgd, adam, adamw, rmsprop"));
  CHECK_THAT(set_error({"model.kind=GPT"}), Contains("model.kind = 'GPT': expected one of gpt, mlp"));
  TempDir dir;
  CHECK_THAT(config_error([&] { load_config(dir.write("e.toml", "[data]\norder = \"random\"\n"), {}); }),
             Contains("data.order = 'random': expected one of shuffled, sequential"));
  CHECK_THAT(config_error([&] { load_config(dir.write("e.toml", "model.kind = 3\n"), {}); }),
             Contains("model.kind = 3: expected one of gpt, mlp"));
}

TEST_CASE("error: missing, unreadable or unparsable file names the file", "[config]") {
  TempDir dir;
  std::string missing = (dir.path / "nope.toml").string();
  CHECK_THAT(config_error([&] { load_config(missing, {}); }), Contains(missing + ": config file not found"));
  CHECK_THAT(config_error([&] { load_config(dir.path.string(), {}); }), Contains("is a directory"));

  std::string broken = dir.write("broken.toml", "[train]\nsteps = 5\n[model\nn_layer = 4\n");
  std::string msg = config_error([&] { load_config(broken, {}); });
  CHECK_THAT(msg, Contains(broken + ":3:"));
  CHECK_THAT(msg, Contains("invalid TOML"));

  std::string dup = dir.write("dup.toml", "[train]\nsteps = 5\nsteps = 6\n");
  CHECK_THAT(config_error([&] { load_config(dup, {}); }), Contains(dup + ":3:"));
}

TEST_CASE("error: malformed --set", "[config]") {
  CHECK_THAT(set_error({"train.steps"}), Contains("override: 'train.steps' has no '=': expected key=value"));
  CHECK_THAT(set_error({"=5"}), Contains("'=5' has no key before '='"));
  CHECK_THAT(set_error({""}), Contains("has no '='"));
}

TEST_CASE("validate: rules across keys, in one place", "[config]") {
  CHECK_THAT(set_error({"parallel.microbatches=3"}), Contains("parallel.microbatches = 3 does not divide train.batch_size = 16"));
  CHECK_THAT(set_error({"parallel.virtual_stages=2"}), Contains("needs parallel.schedule = interleaved"));
  CHECK_THAT(set_error({"model.n_embd=250"}), Contains("model.n_embd = 250 is not divisible by model.n_head = 4"));
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=mlp", "model.n_embd=250"}));  // mlp has no heads

  CHECK_THAT(set_error({"train.steps=300", "train.lr_schedule=cosine", "train.warmup_steps=500"}),
             Contains("train.warmup_steps = 500 exceeds train.steps = 300"));
  CHECK_NOTHROW(load_config(std::nullopt, {"train.steps=300", "train.lr_schedule=cosine", "train.warmup_steps=300"}));
  CHECK_THAT(set_error({"train.lr_schedule=cosine", "train.min_lr=0.01"}),
             Contains("train.min_lr = 0.01 is above optim.lr = 0.001 (torch default for adamw)"));
  CHECK_THAT(set_error({"train.lr_schedule=cosine", "optim.lr=1e-4", "train.min_lr=1e-3"}),
             Contains("train.min_lr = 0.001 is above optim.lr = 0.0001:"));

  CHECK_THAT(set_error({"optim.kind=sgd", "optim.beta1=0.8"}),
             Contains("optim.beta1 = 0.8 is set, but optim.kind = sgd does not use it (it is read by adam, adamw)"));
  CHECK_THAT(set_error({"optim.centered=true"}), Contains("optim.centered = true is set, but optim.kind = adamw"));
  CHECK_THAT(set_error({"optim.kind=sgd", "optim.nesterov=true"}),
             Contains("optim.nesterov = true needs optim.momentum > 0 and optim.dampening = 0"));
  CHECK_THAT(set_error({"optim.kind=sgd", "optim.nesterov=true", "optim.momentum=0.9", "optim.dampening=0.5"}),
             Contains("found momentum 0.9, dampening 0.5"));

  CHECK_THAT(set_error({"parallel.data=3"}),
             Contains("train.batch_size = 16 is not divisible by parallel.data x parallel.microbatches = 3 x 1"));
  CHECK_THAT(set_error({"parallel.data=4", "parallel.microbatches=8"}), Contains("= 4 x 8"));
  CHECK_THAT(set_error({"ps.shards=2"}), Contains("ps.* is set, but parallel.gradient_exchange = ring"));
  CHECK_THAT(set_error({"parallel.gradient_exchange=ps", "ps.staleness=2"}), Contains("ps.staleness = 2 needs ps.mode = ssp"));
  CHECK_THAT(set_error({"parallel.gradient_exchange=ps", "parallel.zero=1"}), Contains("already own the optimizer state"));
  CHECK_THAT(set_error({"parallel.gradient_exchange=ps", "parallel.pipeline=2", "parallel.microbatches=2"}),
             Contains("use ring or alltoall with pipelines"));
  CHECK_THAT(set_error({"parallel.gradient_exchange=ps", "ps.mode=async", "train.deterministic=true"}),
             Contains("asynchronous updates depend on timing"));
  CHECK_THAT(set_error({"comm.compression=zstd"}), Contains("comm.compression = \"zstd\" is not one of none, fp16"));
  CHECK_THAT(set_error({"comm.compression=topk:2"}), Contains("the top-k fraction must be a number in (0, 1]"));
  CHECK_THAT(set_error({"comm.compression=topk:"}), Contains("the top-k fraction"));
  CHECK_THAT(set_error({"comm.compression=powersgd:0"}), Contains("the PowerSGD rank must be a whole number >= 1"));
  CHECK_THAT(set_error({"comm.compression=int8", "train.deterministic=true"}), Contains("compression is lossy"));
  // The spec is parsed once, when the key is set: RunConfig holds its kind and parameters.
  const comm::CompressionSpec powersgd = load_config(std::nullopt, {"comm.compression=powersgd:4", "parallel.data=2"}).comm.compression;
  CHECK(powersgd.kind == comm::CompressionKind::kPowerSgd);
  CHECK(powersgd.rank == 4);
  CHECK(powersgd.text == "powersgd:4");
  CHECK(RunConfig{}.comm.compression.kind == comm::CompressionKind::kNone);
  CHECK_THAT(set_error({"comm.compression=fp16", "parallel.zero=1"}), Contains("ZeRO-1 reduce-scatters uncompressed"));
  // A host beyond loopback is a config error where troupe starts the ranks itself (launch refuses it,
  // tests/test_multi_host_cli.cpp), and allowed for ranks a launcher started.
  CHECK_NOTHROW(load_config(std::nullopt, {"comm.transport=tcp", "comm.address=10.0.0.1:29500"}));
  CHECK_THAT(set_error({"comm.transport=tcp", "comm.address=127.0.0.1"}), Contains("must be host:port"));
  CHECK_THAT(set_error({"comm.transport=tcp", "comm.address=[::1]:29500"}),
             Contains("comm.address = \"[::1]:29500\" is an IPv6 address; troupe's TCP links are IPv4"));
  CHECK_THAT(set_error({"comm.transport=tcp", "comm.address=127.0.0.1:http"}), Contains("has port 'http'"));
  CHECK_THAT(set_error({"train.device=gpu"}), Contains("train.device = \"gpu\" is not a device"));
  CHECK_THAT(set_error({"train.device=cpu:1"}), Contains("train.device = \"cpu:1\" is not a device"));
  CHECK_THAT(set_error({"train.device=cuda:99999999999"}), Contains("is not a device"));  // no int holds it
  // Parsed once: the config holds the device; it prints as written for cpu, cuda and cuda:N.
  CHECK(load_config(std::nullopt, {"train.device=cuda:2"}).train.device == Device::cuda(2));
  CHECK(load_config(std::nullopt, {"train.device=cpu:0"}).train.device == Device::cpu());
  CHECK(*find_config_key("train.device")->get(load_config(std::nullopt, {"train.device=cuda:0"})) ==
        ConfigValue{std::string("cuda")});
  CHECK_FALSE(computes_on_cuda(RunConfig{}));
  CHECK(computes_on_cuda(load_config(std::nullopt, {"train.device=cuda:1"})));
  CHECK(computes_on_cuda(load_config(std::nullopt, {"parallel.pipeline=2", "parallel.microbatches=2", "parallel.placement=cpu,cuda:0"})));
  CHECK_THAT(set_error({"parallel.pipeline=2", "parallel.microbatches=2", "parallel.placement=cpu"}),
             Contains("names 1 devices for parallel.pipeline = 2 stages"));
  CHECK_THAT(set_error({"parallel.pipeline=2", "parallel.microbatches=2", "parallel.placement=cpu,tpu:0"}),
             Contains("parallel.placement = \"cpu,tpu:0\", stage 1: \"tpu:0\" is not a device") &&
                 Contains("each cpu, cuda or cuda:N"));
  CHECK_THAT(set_error({"parallel.pipeline=3", "parallel.placement=cpu,,cpu"}), Contains("stage 1: \"\" is not a device"));
  CHECK_THAT(set_error({"parallel.pipeline=2", "parallel.placement=cpu, cpu"}), Contains("stage 1: \" cpu\" is not"));
  CHECK_NOTHROW(load_config(std::nullopt, {"parallel.pipeline=2", "parallel.microbatches=2", "parallel.placement=cuda:0,cpu"}));
  // Parsed once: the config holds one device per stage, and prints the host as cpu and a GPU as cuda:N.
  const RunConfig placed = load_config(std::nullopt, {"parallel.pipeline=3", "parallel.placement=cuda,cpu:0,cuda:2"});
  CHECK(placed.parallel.placement == std::vector<Device>{Device::cuda(0), Device::cpu(), Device::cuda(2)});
  CHECK(*find_config_key("parallel.placement")->get(placed) == ConfigValue{std::string("cuda:0,cpu,cuda:2")});
  CHECK(load_config(std::nullopt, {"parallel.placement="}).parallel.placement.empty());
  // The CNN and the LSTM run on the CPU only: a placement with a GPU stage is refused, one without is not.
  CHECK_THAT(set_error({"model.kind=cnn", "parallel.pipeline=2", "parallel.placement=cpu,cuda:1"}),
             Contains("model.kind = cnn with parallel.placement = \"cpu,cuda:1\": the CNN's kernels exist on the CPU"));
  CHECK_NOTHROW(load_config(std::nullopt, {"model.kind=cnn", "parallel.pipeline=2", "parallel.placement=cpu,cpu"}));
  CHECK_THAT(set_error({"model.kind=lstm", "parallel.pipeline=2", "parallel.placement=cuda,cpu"}),
             Contains("model.kind = lstm with parallel.placement = \"cuda:0,cpu\": the LSTM recurrence"));

  // A RunConfig built in code meets the same per-key rules as a loaded one.
  RunConfig c;
  c.parallel.pipeline = 2;
  c.parallel.placement = {Device::cpu(), Device::cpu(1)};
  CHECK_THAT(config_error([&] { validate(c); }), Contains("parallel.placement = \"cpu,cpu:1\", stage 1: \"cpu:1\" is not a device"));
  c.parallel.placement = {Device::cpu()};
  CHECK_THAT(config_error([&] { validate(c); }), Contains("parallel.placement = \"cpu\" names 1 devices for parallel.pipeline = 2"));
  c = RunConfig{};
  c.train.batch_size = 0;
  CHECK_THAT(config_error([&] { validate(c); }), Contains("train.batch_size = 0: must be >= 1"));
  c = RunConfig{};
  // optim.kind is an enum now: a wrong name can only come in as text, and is refused when parsed.
  CHECK_THAT(config_error([&] { apply_config_override(c, "optim.kind=lamb"); }),
             Contains("optim.kind = 'lamb': expected one of"));
}

TEST_CASE("help lists every key with type, default and help, aligned", "[config]") {
  std::string help = config_help();
  std::istringstream lines(help);
  std::string line;
  std::map<std::string, std::string> by_key;
  std::set<std::size_t> type_columns;
  while (std::getline(lines, line))
    for (const auto& key : config_schema())
      if (line.rfind("  " + key.name + " ", 0) == 0) {
        by_key[key.name] = line;
        type_columns.insert(line.find_first_not_of(' ', 2 + key.name.size()));
      }
  CHECK(by_key.size() == config_schema().size());
  CHECK(type_columns.size() == 1);  // every type starts in the same column
  CHECK_THAT(by_key["train.steps"], Contains("int") && Contains("500") && Contains("optimizer steps to run; 0: none"));
  CHECK_THAT(by_key["optim.kind"], Contains("enum") && Contains("adamw") && Contains("one of sgd, adam, adamw, rmsprop"));
  CHECK_THAT(by_key["model.mlp_hidden"], Contains("int list") && Contains("1024,1024"));
  CHECK_THAT(help, Contains("* default: torch default for optim.kind (rmsprop: 1e-2; sgd, adam, adamw: 1e-3)"));
}

TEST_CASE("markdown reference lists every key once, with its type, default and allowed values", "[config]") {
  std::string md = config_markdown();
  std::istringstream lines(md);
  std::string line;
  std::map<std::string, std::string> by_key;
  std::size_t rows = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("| `", 0) != 0) continue;
    ++rows;
    for (const auto& key : config_schema())
      if (line.rfind("| `" + key.name + "` |", 0) == 0) {
        CHECK(by_key.count(key.name) == 0);  // once
        by_key[key.name] = line;
      }
  }
  CHECK(by_key.size() == config_schema().size());
  CHECK(rows == config_schema().size());  // no row that is not a key
  CHECK_THAT(by_key["train.steps"],
             Catch::Matchers::StartsWith("| `train.steps` | int | `500` | >= 0 and <= 1000000000000 | optimizer steps"));
  CHECK_THAT(by_key["optim.kind"], Contains("| enum | `adamw` | `sgd`, `adam`, `adamw`, `rmsprop` |"));
  CHECK_THAT(by_key["optim.beta1"], Contains("torch default for optim.kind") && Contains("used by adam, adamw"));
  CHECK_THAT(by_key["train.deterministic"], Contains("| bool | `false` | `true`, `false` |"));
  CHECK_THAT(md, Contains("\n## parallel\n"));
}

TEST_CASE("train.precision: f32 or bf16, and bf16 on CUDA only for the single-device gpt", "[config]") {
  CHECK(load_config(std::nullopt, {}).train.precision == Precision::f32);
  CHECK(load_config(std::nullopt, {"train.precision=bf16"}).train.precision == Precision::bf16);
  CHECK_THAT(set_error({"train.precision=fp16"}), Contains("train.precision") && Contains("bf16"));
  // On the CPU every layout takes bf16.
  CHECK(load_config(std::nullopt, {"train.precision=bf16", "parallel.pipeline=2"}).train.precision == Precision::bf16);
  CHECK_THAT(set_error({"train.precision=bf16", "train.device=cuda", "parallel.data=2"}),
             Contains("train.precision = bf16 on CUDA trains the single-device gpt only") &&
                 Contains("use train.device = cpu"));
}
