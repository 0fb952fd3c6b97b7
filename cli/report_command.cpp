// The report page: reads each run directory's metrics, config, plan and trace, and lays them out as
// HTML with inline SVG (cli/svg_plot.h). Anything but the metrics is optional: a section whose file is
// missing says so.
#include "cli/report_command.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/metrics.h"
#include "cli/svg_plot.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/trace/trace.h"

namespace troupe {

namespace fs = std::filesystem;

namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};

struct RunData {
  std::string dir, name;
  bool finished = true;  // false: a failed run's metrics.partial.jsonl
  std::vector<MetricsRow> rows;
  std::string unit = "tokens";
  std::optional<RunConfig> config;
  std::string plan;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

RunData load_run(const std::string& dir) {
  RunData r;
  r.dir = dir;
  r.name = fs::path(dir).lexically_normal().filename().string();
  if (r.name.empty()) r.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  if (!fs::is_directory(dir)) throw Error(ErrorKind::kUsage, "report: " + dir + ": no such directory");
  fs::path metrics = fs::path(dir) / "metrics.jsonl";
  if (!fs::exists(metrics)) {
    metrics = fs::path(dir) / "metrics.partial.jsonl";
    r.finished = false;
  }
  if (!fs::exists(metrics))
    throw Error(ErrorKind::kUsage, "report: " + dir +
                                       " has no metrics.jsonl: not a run directory (troupe train --run-dir DIR makes one)");
  r.rows = read_metrics(metrics.string(), &r.unit);
  if (r.rows.empty()) throw Error(ErrorKind::kUsage, "report: " + metrics.string() + " holds no steps");
  if (fs::exists(fs::path(dir) / "config.toml")) {
    try {
      r.config = load_config((fs::path(dir) / "config.toml").string(), {});
    } catch (const Error&) {  // written by another troupe version: the page does without it
    }
  }
  if (fs::exists(fs::path(dir) / "plan.txt")) r.plan = read_text(fs::path(dir) / "plan.txt");
  return r;
}

std::string layout_text(const RunData& r) {
  if (!r.config) return "?";
  const ParallelConfig& p = r.config->parallel;
  std::string out;
  if (p.pipeline > 1 || p.microbatches > 1)
    out += fmt::format("pipeline {} ({}, {} micro-batches) ", p.pipeline, p.schedule, p.microbatches);
  if (p.data > 1) out += fmt::format("data {} ({}) ", p.data, p.gradient_exchange);
  return out.empty() ? "one device" : out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Rows after the first (its step includes first-touch allocation), or all of a one-step run.
std::vector<const MetricsRow*> steady(const RunData& r) {
  std::vector<const MetricsRow*> out;
  for (std::size_t i = r.rows.size() > 1 ? 1 : 0; i < r.rows.size(); ++i) out.push_back(&r.rows[i]);
  return out;
}

std::string runs_table(const std::vector<RunData>& runs) {
  std::string out =
      "<table class=\"runs\"><tr><th></th><th>run</th><th>model</th><th>layout</th><th>steps</th><th>final train "
      "loss</th><th>last validation loss</th><th>median throughput</th><th>wall time</th></tr>\n";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunData& r = runs[i];
    std::optional<double> val, acc;
    for (const MetricsRow& row : r.rows) {
      if (row.val_loss) val = row.val_loss;
      if (row.val_accuracy) acc = row.val_accuracy;
    }
    std::vector<double> tp;
    for (const MetricsRow* row : steady(r)) tp.push_back(row->throughput);
    std::string model = r.config ? std::string(name_of(r.config->model.kind)) : "?";
    if (r.config && is_language_model(r.config->model.kind))
      model += fmt::format(" {}x{}", r.config->model.n_layer, r.config->model.n_embd);
    out += fmt::format(
        "<tr><td><span class=\"swatch\" style=\"background:{}\"></span></td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{:.4f}</td><td>{}</td><td>{:.0f} {}/s</td><td>{:.1f} s</td></tr>\n",
        kPalette[i % 8], svg::escape(r.name), r.finished ? "" : " (failed: metrics up to the failure)", svg::escape(model),
        svg::escape(layout_text(r)), r.rows.back().step, r.rows.back().loss,
        val ? fmt::format("{:.4f}{}", *val, acc ? fmt::format(" (accuracy {:.2f}%)", 100 * *acc) : "") : "not evaluated",
        median(tp), r.unit, r.rows.back().elapsed_s);
  }
  return out + "</table>\n";
}

std::string loss_plot(const std::vector<RunData>& runs) {
  std::vector<svg::Series> series;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunData& r = runs[i];
    const std::string prefix = runs.size() > 1 ? r.name + ": " : "";
    svg::Series train{prefix + "train loss", fmt::format("train-loss run-{}", i), kPalette[i % 8], {}, false, false};
    svg::Series val{prefix + "validation loss", fmt::format("val-loss run-{}", i), kPalette[i % 8], {}, true, true};
    for (const MetricsRow& row : r.rows) {
      train.points.emplace_back(static_cast<double>(row.step), row.loss);
      if (row.val_loss) val.points.emplace_back(static_cast<double>(row.step), *row.val_loss);
    }
    series.push_back(std::move(train));
    if (!val.points.empty()) series.push_back(std::move(val));
  }
  return svg::line_plot({"Loss", "step", "loss"}, series);
}

std::string throughput_plot(const std::vector<RunData>& runs) {
  std::vector<svg::Series> series;
  std::string unit = runs.front().unit;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunData& r = runs[i];
    if (r.unit != unit) unit = "tokens or samples";
    svg::Series s{runs.size() > 1 ? r.name : r.unit + "/s", fmt::format("throughput run-{}", i), kPalette[i % 8], {}};
    for (const MetricsRow& row : r.rows) s.points.emplace_back(static_cast<double>(row.step), row.throughput);
    series.push_back(std::move(s));
  }
  return svg::line_plot({"Throughput", "step", unit + " per second"}, series);
}

double ideal_bubble(const RunData& r) {
  if (!r.config || r.config->parallel.pipeline <= 1) return 0.0;
  const ParallelConfig& p = r.config->parallel;
  return theoretical_bubble(p.schedule, p.pipeline, p.microbatches, p.virtual_stages);
}

// Mean per-step compute, communication and idle time of every actor, and its measured bubble.
std::string stage_table(const RunData& r) {
  const std::vector<const MetricsRow*> rows = steady(r);
  if (rows.empty() || rows.front()->stages.empty())
    return "<p>No per-stage times: this run kept no trace (a run directory always does; so does --trace).</p>\n";
  std::string out = fmt::format(
      "<p>Means over steps {}&ndash;{} (the first step, which allocates, left out). Measured bubble: the share of step "
      "time an actor did no compute (forward, backward, optimizer); the schedule's ideal bubble is <b>{:.1f}%</b>.</p>\n"
      "<table class=\"stages\"><tr><th>actor</th><th>compute ms</th><th>communication ms</th><th>idle ms</th>"
      "<th>measured bubble</th></tr>\n",
      rows.front()->step, rows.back()->step, 100.0 * ideal_bubble(r));
  for (std::size_t s = 0; s < rows.front()->stages.size(); ++s) {
    double compute = 0, comm = 0, idle = 0;
    for (const MetricsRow* row : rows) {
      if (s >= row->stages.size()) continue;
      compute += row->stages[s].compute_s;
      comm += row->stages[s].comm_s;
      idle += row->stages[s].idle_s;
    }
    const double n = static_cast<double>(rows.size()), total = compute + comm + idle;
    const bool comm_track = compute == 0.0 && comm > 0.0;
    out += fmt::format("<tr><td>{}</td><td>{:.2f}</td><td>{:.2f}</td><td>{:.2f}</td><td>{}</td></tr>\n",
                       svg::escape(rows.front()->stages[s].name), 1e3 * compute / n, 1e3 * comm / n, 1e3 * idle / n,
                       comm_track ? "(communication thread)"
                                  : fmt::format("{:.1f}%", total > 0 ? 100.0 * (1.0 - compute / total) : 0.0));
  }
  return out + "</table>\n";
}

// One step of the first run from its trace: the last step whose window the metrics recorded.
std::string timeline_section(const RunData& r) {
  const MetricsRow* pick = nullptr;
  for (const MetricsRow& row : r.rows)
    if (row.window_us) pick = &row;
  const fs::path trace_path = fs::path(r.dir) / "trace.json";
  if (!pick || !fs::exists(trace_path)) return "<p>No timeline: this run kept no trace.json.</p>\n";
  const auto [begin, end] = *pick->window_us;
  nlohmann::json trace;
  try {
    trace = nlohmann::json::parse(read_text(trace_path));
  } catch (const nlohmann::json::exception& e) {
    return "<p>No timeline: " + svg::escape(trace_path.string()) + " is not JSON (" + svg::escape(e.what()) + ").</p>\n";
  }
  std::map<int, std::string> names;
  std::vector<svg::Span> spans;
  for (const auto& e : trace.value("traceEvents", nlohmann::json::array())) {
    const std::string ph = e.value("ph", "");
    if (ph == "M") names[e.value("tid", 0)] = e["args"].value("name", "");
    if (ph != "X") continue;
    const double b = e.value("ts", 0.0), d = e.value("dur", 0.0);
    if (b + d <= begin || b >= end) continue;
    spans.push_back({e.value("tid", 0), b, b + d, e.value("cat", ""), e.value("name", "")});
  }
  std::vector<std::string> labels;
  std::map<int, int> row_of;
  for (const auto& [tid, name] : names) {
    row_of[tid] = static_cast<int>(labels.size());
    std::string label = name;
    for (const StageTime& s : pick->stages)
      if (s.name == name && s.compute_s > 0.0) {
        const double total = s.compute_s + s.comm_s + s.idle_s;
        label += fmt::format(" ({:.0f}% idle)", total > 0 ? 100.0 * (1.0 - s.compute_s / total) : 0.0);
      }
    labels.push_back(label);
  }
  for (svg::Span& s : spans) s.row = row_of.count(s.row) ? row_of[s.row] : -1;
  std::string legend;
  for (const char* c : {"forward", "backward", "optimizer", "send", "comm", "idle"})
    legend += fmt::format("<span class=\"swatch\" style=\"background:{}\"></span>{} ", svg::category_color(c),
                          std::string(c) == "send" ? "send/recv" : std::string(c) == "idle" ? "waiting" : c);
  return fmt::format("<p>Step {} of {}, {:.1f} ms; ideal bubble of the schedule {:.1f}%. {}</p>\n", pick->step,
                     svg::escape(r.name), (end - begin) / 1e3, 100.0 * ideal_bubble(r), legend) +
         svg::timeline(labels, spans, begin, end);
}

const char* const kStyle = R"(body{font-family:sans-serif;margin:24px;max-width:960px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(2){text-align:left}
.swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 8px;vertical-align:middle}
pre{background:#f7f7f7;padding:10px;font-size:12px;overflow-x:auto}svg{display:block;margin:8px 0})";

}  // namespace

std::string write_report(const std::vector<std::string>& dirs) {
  if (dirs.empty()) throw Error(ErrorKind::kUsage, "report: give at least one run directory");
  std::vector<RunData> runs;
  for (const std::string& d : dirs) runs.push_back(load_run(d));
  const RunData& first = runs.front();

  std::string names;
  for (const RunData& r : runs) names += (names.empty() ? "" : ", ") + r.name;
  std::string html = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>troupe report: {0}</title>\n"
      "<style>{1}</style></head>\n<body>\n<h1>troupe report: {0}</h1>\n",
      svg::escape(names), kStyle);
  html += "<h2>Runs</h2>\n" + runs_table(runs);
  html += "<h2>Loss</h2>\n<p>Steps count from 1: step N is the N-th update; its train loss is that update's batch "
          "before it. Validation loss (dashed, dots) after the steps it was evaluated.</p>\n" +
          loss_plot(runs);
  html += "<h2>Throughput</h2>\n" + throughput_plot(runs);
  html += "<h2>Per-stage time (" + svg::escape(first.name) + ")</h2>\n" + stage_table(first);
  html += "<h2>Timeline</h2>\n" + timeline_section(first);
  html += "<h2>Plan (" + svg::escape(first.name) + ")</h2>\n";
  html += first.plan.empty() ? "<p>No plan.txt in this run directory.</p>\n"
                             : "<pre class=\"plan\">" + svg::escape(first.plan) + "</pre>\n";
  html += "</body></html>\n";

  const std::string path = (fs::path(first.dir) / "report.html").string(), tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << html;
    out.flush();
    if (!out) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw Error(ErrorKind::kUsage, "report: cannot write " + path);
    }
  }
  fs::rename(tmp, path);
  return path;
}

}  // namespace troupe
