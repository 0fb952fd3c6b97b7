// Metrics rows to and from JSON lines and CSV. Losses print with 17 significant digits (the double's
// exact value), so two runs' files can be compared bit for bit.
#include "cli/metrics.h"

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace troupe {

namespace {
std::string column_name(const std::string& track) {
  std::string out;
  for (char c : track) out += (c == ' ' || c == ',' || c == '"') ? '_' : c;
  return out;
}

std::string opt(const std::optional<double>& v, const char* format = "{:.9g}") {
  return v ? fmt::format(fmt::runtime(format), *v) : std::string();
}
}  // namespace

std::string to_json_line(const MetricsRow& r, const std::string& unit) {
  std::string out = fmt::format("{{\"step\": {}, \"loss\": {:.17g}, \"lr\": {:.9g}, \"{}_per_s\": {:.1f}", r.step, r.loss,
                                r.lr, unit, r.throughput);
  if (r.grad_norm) out += fmt::format(", \"grad_norm\": {:.9g}", *r.grad_norm);
  out += fmt::format(", \"step_s\": {:.6f}, \"elapsed_s\": {:.3f}", r.step_s, r.elapsed_s);
  if (r.val_loss) out += fmt::format(", \"val_loss\": {:.17g}", *r.val_loss);
  if (r.val_accuracy) out += fmt::format(", \"val_accuracy\": {:.9g}", *r.val_accuracy);
  if (!r.stages.empty()) {
    out += ", \"stages\": [";
    for (std::size_t i = 0; i < r.stages.size(); ++i) {
      const StageTime& s = r.stages[i];
      out += fmt::format("{}{{\"name\": {}, \"compute_s\": {:.6f}, \"comm_s\": {:.6f}, \"idle_s\": {:.6f}}}",
                         i ? ", " : "", nlohmann::json(s.name).dump(), s.compute_s, s.comm_s, s.idle_s);
    }
    out += "]";
  }
  if (r.window_us) out += fmt::format(", \"window_us\": [{:.1f}, {:.1f}]", r.window_us->first, r.window_us->second);
  return out + "}";
}

std::string csv_header(const MetricsRow& first, const std::string& unit) {
  std::string out = "step,loss,lr," + unit + "_per_s,grad_norm,step_s,elapsed_s,val_loss,val_accuracy";
  for (const StageTime& s : first.stages) {
    const std::string c = column_name(s.name);
    out += fmt::format(",{0}_compute_s,{0}_comm_s,{0}_idle_s", c);
  }
  return out;
}

std::string csv_line(const MetricsRow& r) {
  std::string out = fmt::format("{},{:.17g},{:.9g},{:.1f},{},{:.6f},{:.3f},{},{}", r.step, r.loss, r.lr, r.throughput,
                                opt(r.grad_norm), r.step_s, r.elapsed_s, opt(r.val_loss, "{:.17g}"), opt(r.val_accuracy));
  for (const StageTime& s : r.stages) out += fmt::format(",{:.6f},{:.6f},{:.6f}", s.compute_s, s.comm_s, s.idle_s);
  return out;
}

std::vector<MetricsRow> read_metrics(const std::string& path, std::string* unit) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::kUsage, path + ": cannot read (no such file?)");
  std::vector<MetricsRow> rows;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      MetricsRow r;
      r.step = j.at("step").get<std::int64_t>();
      r.loss = j.at("loss").get<double>();
      r.lr = j.at("lr").get<double>();
      const bool samples = j.contains("samples_per_s");
      if (unit) *unit = samples ? "samples" : "tokens";
      r.throughput = j.at(samples ? "samples_per_s" : "tokens_per_s").get<double>();
      if (j.contains("grad_norm")) r.grad_norm = j["grad_norm"].get<double>();
      r.step_s = j.value("step_s", 0.0);
      r.elapsed_s = j.value("elapsed_s", 0.0);
      if (j.contains("val_loss")) r.val_loss = j["val_loss"].get<double>();
      if (j.contains("val_accuracy")) r.val_accuracy = j["val_accuracy"].get<double>();
      if (j.contains("stages"))
        for (const auto& s : j["stages"])
          r.stages.push_back({s.at("name").get<std::string>(), s.at("compute_s").get<double>(),
                              s.at("comm_s").get<double>(), s.at("idle_s").get<double>()});
      if (j.contains("window_us")) r.window_us = {j["window_us"].at(0).get<double>(), j["window_us"].at(1).get<double>()};
      rows.push_back(std::move(r));
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorKind::kUsage, fmt::format("{}:{}: not a metrics row ({})", path, n, e.what()));
    }
  }
  return rows;
}

}  // namespace troupe
