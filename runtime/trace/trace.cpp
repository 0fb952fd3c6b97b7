// TraceRecorder: span storage, Chrome JSON output and busy-time accounting.
#include "runtime/trace/trace.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace troupe {

TraceRecorder::TraceRecorder(bool enabled) : enabled_(enabled), origin_(std::chrono::steady_clock::now()) {}

int TraceRecorder::track(const std::string& name) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < tracks_.size(); ++i)
    if (tracks_[i] == name) return static_cast<int>(i);
  tracks_.push_back(name);
  return static_cast<int>(tracks_.size() - 1);
}

double TraceRecorder::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - origin_).count();
}

void TraceRecorder::span(int track, std::string_view name, std::string_view category, double begin_us, double end_us,
                         int microbatch) {
  if (!enabled_) return;
  std::lock_guard lock(mutex_);
  spans_.push_back({track, std::string(name), std::string(category), begin_us, end_us, microbatch});
}

void TraceRecorder::window(double begin_us, double end_us) {
  if (!enabled_) return;
  std::lock_guard lock(mutex_);
  windows_.emplace_back(begin_us, end_us);
}

void TraceRecorder::write_chrome_trace(const std::string& path) const {
  nlohmann::json events = nlohmann::json::array();
  {
    std::lock_guard lock(mutex_);
    for (std::size_t t = 0; t < tracks_.size(); ++t)
      events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", t}, {"args", {{"name", tracks_[t]}}}});
    for (const Span& s : spans_) {
      nlohmann::json e = {{"name", s.name}, {"cat", s.category}, {"ph", "X"}, {"pid", 1},
                          {"tid", s.track},  {"ts", s.begin},     {"dur", s.end - s.begin}};
      if (s.microbatch >= 0) e["args"] = {{"microbatch", s.microbatch}};
      events.push_back(std::move(e));
    }
  }
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp);
    if (!out) throw Error(ErrorKind::kIo, "--trace " + path + ": cannot write (does the directory exist?)");
    out << nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump() << "\n";
    if (!out.flush()) {
      std::filesystem::remove(tmp);
      throw Error(ErrorKind::kIo, "--trace " + path + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw Error(ErrorKind::kIo, "--trace " + path + ": " + ec.message());
  }
}

std::vector<TraceRecorder::TrackStats> TraceRecorder::track_stats() const {
  std::lock_guard lock(mutex_);
  std::vector<TrackStats> stats(tracks_.size());
  double window_total = 0.0;
  for (auto [b, e] : windows_) window_total += e - b;
  for (std::size_t t = 0; t < tracks_.size(); ++t) {
    // Busy intervals clipped to the windows, then merged so overlaps count once.
    std::vector<std::pair<double, double>> busy;
    for (const Span& s : spans_) {
      if (s.track != static_cast<int>(t)) continue;
      if (s.category != "forward" && s.category != "backward" && s.category != "optimizer") continue;
      for (auto [wb, we] : windows_) {
        const double b = std::max(s.begin, wb), e = std::min(s.end, we);
        if (e > b) busy.emplace_back(b, e);
      }
    }
    std::sort(busy.begin(), busy.end());
    double total = 0.0, cur_b = 0.0, cur_e = -1.0;
    for (auto [b, e] : busy) {
      if (b > cur_e) {
        if (cur_e > cur_b) total += cur_e - cur_b;
        cur_b = b;
        cur_e = e;
      } else {
        cur_e = std::max(cur_e, e);
      }
    }
    if (cur_e > cur_b) total += cur_e - cur_b;
    stats[t] = {tracks_[t], total, window_total, window_total > 0 ? 1.0 - total / window_total : 0.0};
  }
  return stats;
}

double theoretical_bubble(std::string_view schedule, int p, int m, int v) {
  if (schedule == "interleaved") return static_cast<double>(p - 1) / (static_cast<double>(v) * m + p - 1);
  return static_cast<double>(p - 1) / static_cast<double>(m + p - 1);
}

}  // namespace troupe
