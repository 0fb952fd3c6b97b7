// TraceRecorder: span storage, Chrome trace-event output and busy-time (bubble) accounting.
#include "runtime/trace/trace.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace troupe {
namespace {

bool is_busy(const std::string& category) {
  return category == "forward" || category == "backward" || category == "optimizer";
}

// On a compute track: moving activations or gradients, or waiting for a gradient collective.
bool is_transfer(const std::string& category) {
  return category == "send" || category == "recv" || category == "comm";
}

// Sorts intervals and merges overlapping or touching ones, dropping empty ones.
std::vector<std::pair<double, double>> merged(std::vector<std::pair<double, double>> intervals) {
  std::sort(intervals.begin(), intervals.end());
  std::vector<std::pair<double, double>> out;
  for (const auto& [b, e] : intervals) {
    if (!(e > b)) continue;
    if (!out.empty() && b <= out.back().second)
      out.back().second = std::max(out.back().second, e);
    else
      out.emplace_back(b, e);
  }
  return out;
}

double total_length(const std::vector<std::pair<double, double>>& disjoint) {
  double total = 0.0;
  for (const auto& [b, e] : disjoint) total += e - b;
  return total;
}

// A temporary name next to `path`, unique per process and call, so concurrent writers never share one.
std::string temp_name_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".partial." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace

TraceRecorder::TraceRecorder(bool enabled) : enabled_(enabled) {
  now_us();  // fixes the clock's zero no later than the first recorder's creation
}

double TraceRecorder::now_us() {
  // A function-local static is initialised once, thread-safely, on first use.
  static const std::chrono::steady_clock::time_point origin = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - origin).count();
}

int TraceRecorder::track(std::string name) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < tracks_.size(); ++i)
    if (tracks_[i] == name) return static_cast<int>(i);
  tracks_.push_back(std::move(name));
  seen_.push_back(0);
  only_comm_.push_back(1);
  return static_cast<int>(tracks_.size() - 1);
}

void TraceRecorder::span(int track, std::string_view name, std::string_view category, double begin_us, double end_us,
                         int microbatch) {
  if (!enabled_) return;
  TROUPE_CHECK(end_us >= begin_us, "span ", name, " ends at ", end_us, " before it begins at ", begin_us);
  Span s{track, std::string(name), std::string(category), begin_us, end_us, microbatch};
  std::lock_guard lock(mutex_);
  TROUPE_CHECK(track >= 0 && static_cast<std::size_t>(track) < tracks_.size(), "unknown track ", track);
  seen_[track] = 1;
  if (s.category != "comm") only_comm_[track] = 0;
  spans_.push_back(std::move(s));
}

void TraceRecorder::window(double begin_us, double end_us) {
  if (!enabled_) return;
  TROUPE_CHECK(end_us >= begin_us, "window ends at ", end_us, " before it begins at ", begin_us);
  std::lock_guard lock(mutex_);
  windows_.emplace_back(begin_us, end_us);
}

void TraceRecorder::write_chrome_trace(const std::string& path) const {
  // Copy under the lock, format outside it: recording threads are not held up by disk I/O.
  std::vector<std::string> tracks;
  std::vector<Span> spans;
  {
    std::lock_guard lock(mutex_);
    tracks = tracks_;
    spans = spans_;
  }
  // Spans arrive in whatever order threads recorded them; order by track then start for a stable file.
  std::stable_sort(spans.begin(), spans.end(),
                   [](const Span& a, const Span& b) { return std::tie(a.track, a.begin) < std::tie(b.track, b.begin); });

  const std::string tmp = temp_name_for(path);
  auto fail = [&](const std::string& why) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error(ErrorKind::kIo, "cannot write trace file " + path + ": " + why);
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(std::string(std::strerror(errno)) + " (does the directory exist and is it writable?)");
    // Streamed one event at a time: a long run's trace never exists as one JSON tree in memory.
    out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[";
    bool first = true;
    auto emit = [&](const nlohmann::json& event) {
      out << (first ? "\n" : ",\n") << event.dump();
      first = false;
    };
    for (std::size_t t = 0; t < tracks.size(); ++t)
      emit({{"name", "thread_name"}, {"ph", "M"}, {"pid", 1}, {"tid", t}, {"args", {{"name", tracks[t]}}}});
    for (const Span& s : spans) {
      nlohmann::json e = {{"name", s.name}, {"cat", s.category}, {"ph", "X"},          {"pid", 1},
                          {"tid", s.track}, {"ts", s.begin},     {"dur", s.end - s.begin}};
      if (s.microbatch >= 0) e["args"] = {{"microbatch", s.microbatch}};
      emit(e);
    }
    out << "\n]}\n";
    out.flush();
    if (!out) fail("write failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(ec.message());
}

std::vector<TrackStats> TraceRecorder::stats_locked(const std::vector<Interval>& windows, std::size_t from_span) const {
  const double window_total = total_length(windows);
  // A track with spans, all of them "comm", is a communication track (kept up to date by span(), over
  // every span, so a per-step call classifies as the whole run's does).
  const std::vector<char>& seen = seen_;
  const std::vector<char>& only_comm = only_comm_;
  std::vector<std::vector<Interval>> busy(tracks_.size()), transfer(tracks_.size());
  for (std::size_t i = from_span; i < spans_.size(); ++i) {
    const Span& s = spans_[i];
    const bool communication = seen[s.track] && only_comm[s.track];
    std::vector<std::vector<Interval>>* into = nullptr;
    if (communication ? s.category == "comm" : is_busy(s.category)) into = &busy;
    else if (!communication && is_transfer(s.category)) into = &transfer;
    if (!into) continue;
    for (const auto& [wb, we] : windows) {
      const double b = std::max(s.begin, wb), e = std::min(s.end, we);
      if (e > b) (*into)[s.track].emplace_back(b, e);
    }
  }
  std::vector<TrackStats> stats;
  stats.reserve(tracks_.size());
  for (std::size_t t = 0; t < tracks_.size(); ++t) {
    // Windows are disjoint, so clipped pieces of one span never overlap each other; merging removes
    // overlaps between different spans (e.g. a forward still running when a backward starts).
    const double b = total_length(merged(busy[t]));
    // Transfer time counts only where the track was not also busy: busy and transfer never add up to
    // more than the window.
    double comm = 0.0;
    if (!transfer[t].empty()) {
      std::vector<Interval> both = busy[t];
      both.insert(both.end(), transfer[t].begin(), transfer[t].end());
      comm = total_length(merged(std::move(both))) - b;
    }
    stats.push_back({tracks_[t], b, window_total, window_total > 0.0 ? 1.0 - b / window_total : 0.0,
                     seen[t] && only_comm[t], comm});
  }
  return stats;
}

std::vector<TrackStats> TraceRecorder::track_stats(double window_begin_us, double window_end_us) const {
  TROUPE_CHECK(window_end_us >= window_begin_us, "window ends at ", window_end_us, " before it begins at ",
               window_begin_us);
  std::lock_guard lock(mutex_);
  // An empty window still reports its tracks (busy 0, bubble 0), hence no call to merged() here.
  return stats_locked({{window_begin_us, window_end_us}});
}

std::vector<TrackStats> TraceRecorder::track_stats() const {
  std::lock_guard lock(mutex_);
  return stats_locked(merged(windows_));
}

std::size_t TraceRecorder::span_count() const {
  std::lock_guard lock(mutex_);
  return spans_.size();
}

std::vector<TrackStats> TraceRecorder::track_stats(double window_begin_us, double window_end_us,
                                                   std::size_t from_span) const {
  TROUPE_CHECK(window_end_us >= window_begin_us, "window ends at ", window_end_us, " before it begins at ",
               window_begin_us);
  std::lock_guard lock(mutex_);
  return stats_locked({{window_begin_us, window_end_us}}, from_span);
}

ScopedSpan::ScopedSpan(TraceRecorder* recorder, int track, std::string_view name, std::string_view category,
                       int microbatch)
    : recorder_(recorder && recorder->enabled() ? recorder : nullptr), track_(track), microbatch_(microbatch) {
  if (!recorder_) return;
  name_ = name;
  category_ = category;
  begin_us_ = TraceRecorder::now_us();
}

ScopedSpan::~ScopedSpan() {
  if (recorder_) recorder_->span(track_, name_, category_, begin_us_, TraceRecorder::now_us(), microbatch_);
}

double theoretical_bubble(ScheduleKind schedule, int p, int m, int v) {
  if (p < 1 || m < 1 || v < 1)
    throw Error(ErrorKind::kConfig, "theoretical_bubble: stages, micro-batches and virtual stages must be >= 1 (got p=" +
                                        std::to_string(p) + ", m=" + std::to_string(m) + ", v=" + std::to_string(v) + ")");
  if (schedule == ScheduleKind::interleaved) return static_cast<double>(p - 1) / (static_cast<double>(v) * m + p - 1);
  return static_cast<double>(p - 1) / static_cast<double>(m + p - 1);  // gpipe, 1f1b, layer
}

}  // namespace troupe
