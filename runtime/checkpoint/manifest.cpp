// The manifest as JSON (nlohmann::ordered_json: fields in the order a person reads them).
#include "runtime/checkpoint/manifest.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/version.h"

namespace troupe {

namespace {
constexpr const char* kFormat = "troupe-checkpoint";
constexpr int kVersion = 1;
}  // namespace

Manifest make_manifest(const TrainingState& state, const RunConfig& config,
                       const std::map<std::string, FileChecksum>& files) {
  Manifest m;
  m.step = state.step;
  m.troupe_version = std::string(troupe_version());
  m.optimizer_kind = std::string(name_of(config.optim.kind));
  m.optimizer_step = state.optimizer.step;
  for (const auto& [name, ps] : state.optimizer.params) m.param_steps[name] = ps.step;
  m.files = files;

  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["troupe_version"] = m.troupe_version;
  j["step"] = m.step;
  j["data"] = {{"next_step", m.step},
               {"order", std::string(name_of(config.data.order))},
               {"seed", config.train.seed},
               {"batch_size", config.train.batch_size}};
  j["random_streams"] = {{"data_order", {{"function", "order_hash (splitmix64)"}, {"seed", config.train.seed}}}};
  const double base = config.optim.lr_or_default();
  j["lr_schedule"] = {{"kind", std::string(name_of(config.train.lr_schedule))},
                      {"base_lr", base},
                      {"warmup_steps", config.train.warmup_steps},
                      {"min_lr", config.train.min_lr},
                      {"total_steps", config.train.steps},
                      {"next_lr", lr_at(config.train, base, m.step)}};
  nlohmann::ordered_json steps = nlohmann::ordered_json::object();
  for (const auto& [name, s] : m.param_steps) steps[name] = s;
  j["optimizer"] = {{"kind", m.optimizer_kind}, {"step", m.optimizer_step}, {"param_steps", steps}};
  nlohmann::ordered_json fj = nlohmann::ordered_json::object();
  for (const auto& [name, c] : files) fj[name] = {{"bytes", c.bytes}, {"crc32", fmt::format("{:08x}", c.crc32)}};
  j["files"] = fj;
  m.json = j.dump(2) + "\n";
  return m;
}

std::string manifest_to_json(const Manifest& manifest) { return manifest.json; }

Manifest parse_manifest(const std::string& text, const std::string& source) {
  auto bad = [&](const std::string& what) { return Error(ErrorKind::kInput, source + ": " + what); };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw bad("not valid JSON (an incomplete or damaged checkpoint)");
  }
  if (!j.is_object() || j.value("format", "") != kFormat) throw bad("not a troupe checkpoint manifest");
  if (j.value("version", 0) != kVersion)
    throw bad(fmt::format("manifest version {} (this troupe reads version {})", j.value("version", 0), kVersion));
  Manifest m;
  try {
    m.step = j.at("step").get<std::int64_t>();
    m.troupe_version = j.at("troupe_version").get<std::string>();
    const auto& opt = j.at("optimizer");
    m.optimizer_kind = opt.at("kind").get<std::string>();
    m.optimizer_step = opt.at("step").get<std::int64_t>();
    for (const auto& [name, s] : opt.at("param_steps").items()) m.param_steps[name] = s.get<std::int64_t>();
    for (const auto& [name, f] : j.at("files").items()) {
      FileChecksum c;
      c.bytes = f.at("bytes").get<std::uint64_t>();
      c.crc32 = static_cast<std::uint32_t>(std::stoul(f.at("crc32").get<std::string>(), nullptr, 16));
      m.files[name] = c;
    }
  } catch (const std::exception& e) {
    throw bad(std::string("missing or malformed field (") + e.what() + ")");
  }
  if (m.step < 0) throw bad("negative step");
  m.json = text;
  return m;
}

}  // namespace troupe
