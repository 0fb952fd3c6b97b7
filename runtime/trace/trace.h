// Owns TraceRecorder: timed spans per actor (track), written as Chrome trace-event JSON, and each track's measured bubble.
//
// Contract:
// - A track is one actor ("stage 0", "device"); `track(name)` registers it once and returns the same id
//   for the same name thereafter. Ids are dense, 0, 1, 2, ... in registration order.
// - A span is a complete interval [begin_us, end_us] on a track, with a name ("F3", "optimizer step"), a
//   category and optionally the micro-batch it belongs to. Categories used by callers: "forward",
//   "backward", "optimizer" (these three count as busy), "send", "recv", "idle" (these do not).
// - Times are microseconds from `now_us()`: one steady clock for the whole process whose zero is its first
//   use, which is the first recorder's construction (the constructor reads the clock). Spans from several
//   recorders or threads are therefore on one time axis. Literal times are accepted too (tests do that).
// - Recording (`span`, `window`, ScopedSpan) is thread-safe. A recorder made with enabled = false keeps
//   nothing: every record call returns after one branch, so callers may leave the calls in hot loops.
//   `track` still hands out ids when disabled so callers need no second code path.
// - Passing a track id that `track` did not return, or end < begin, is a caller bug (TROUPE_CHECK).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/config/choices.h"

namespace troupe {

// One track's busy time inside a window. busy_us is the union of its forward/backward/optimizer spans
// clipped to the window (overlapping spans count once); span_us is the window's length; bubble is the
// idle share 1 - busy_us / span_us (0 for an empty window). A communication track (every span on it of
// category "comm", e.g. a stage's gradient-sync thread) counts its comm spans as busy instead: there
// "bubble" is the share of the step with no transfer in flight, not lost compute.
struct TrackStats {
  std::string name;
  double busy_us = 0.0;
  double span_us = 0.0;
  double bubble = 0.0;
  bool communication = false;
  // A compute track's "send", "recv" and "comm" spans (the union, clipped to the window, less what
  // overlaps its busy time): time the actor spent moving activations or waiting for a gradient
  // collective. 0 on a communication track.
  double comm_us = 0.0;
};

class TraceRecorder {
 public:
  using TrackStats = troupe::TrackStats;

  explicit TraceRecorder(bool enabled = true);
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  bool enabled() const { return enabled_; }

  // Registers the track `name` (or finds it) and returns its id.
  int track(std::string name);

  // Microseconds on the process-wide steady clock described above.
  static double now_us();

  // Records a complete span; microbatch < 0 means "not tied to a micro-batch".
  void span(int track, std::string_view name, std::string_view category, double begin_us, double end_us,
            int microbatch = -1);

  // Writes {"traceEvents": [...]} (Perfetto, chrome://tracing): per track one "M" thread_name event
  // (pid 1, tid = track id, args.name = track name), then its spans as "X" events ordered by start, with
  // ts/dur in microseconds, cat = category and args {"microbatch": k} when one was given.
  // The file is written to a temporary in the same directory and renamed over `path`, so a reader never
  // sees half a trace. On failure nothing is left behind and troupe::Error(kIo) names the path.
  void write_chrome_trace(const std::string& path) const;

  // Busy time and bubble of every track (in id order) inside [window_begin_us, window_end_us].
  std::vector<TrackStats> track_stats(double window_begin_us, double window_end_us) const;

  // Step windows: a trainer marks each training step's wall-clock interval, and `track_stats()` measures
  // busy time inside all marked windows together (span_us = their total length, overlaps counted once),
  // so time between steps (evaluation, logging, checkpoints) is not counted as bubble.
  void window(double begin_us, double end_us);
  std::vector<TrackStats> track_stats() const;

  // Per-step accounting in linear time: the number of spans recorded so far, and the stats of
  // [window_begin_us, window_end_us] over the spans recorded from index `from_span` on only. A caller
  // that takes span_count() before a step and passes it here after the step measures that step
  // without rescanning the whole run.
  std::size_t span_count() const;
  std::vector<TrackStats> track_stats(double window_begin_us, double window_end_us, std::size_t from_span) const;

 private:
  struct Span {
    int track;
    std::string name, category;
    double begin, end;
    int microbatch;
  };
  using Interval = std::pair<double, double>;

  // Requires mutex_ held. `windows` must be sorted and disjoint.
  std::vector<TrackStats> stats_locked(const std::vector<Interval>& windows, std::size_t from_span = 0) const;

  const bool enabled_;
  mutable std::mutex mutex_;
  std::vector<std::string> tracks_;
  std::vector<Span> spans_;
  std::vector<Interval> windows_;
  std::vector<char> seen_, only_comm_;  // per track: has spans; every span is "comm"
};

// Records one span from its construction to its destruction on `track` of `recorder`. A null or disabled
// recorder makes it a no-op (the clock is not read). `name` and `category` are copied only when recording.
// The destructor cannot throw, so an id that `track` did not return ends the program with the check's message.
class ScopedSpan {
 public:
  ScopedSpan(TraceRecorder* recorder, int track, std::string_view name, std::string_view category,
             int microbatch = -1);
  ~ScopedSpan();
  ScopedSpan(const ScopedSpan&) = delete;
  ScopedSpan& operator=(const ScopedSpan&) = delete;

 private:
  TraceRecorder* recorder_;  // null when not recording
  int track_;
  std::string name_, category_;
  int microbatch_;
  double begin_us_ = 0.0;
};

// A schedule's ideal bubble for p stages, m micro-batches and v model chunks per stage:
// (p-1)/(m+p-1) for "gpipe", "1f1b" and "layer"; (p-1)/(v*m+p-1) for "interleaved".
// Throws troupe::Error(kConfig) for p, m, v < 1.
double theoretical_bubble(ScheduleKind schedule, int p, int m, int v);

}  // namespace troupe
