// Owns TraceRecorder: timed spans per actor (track), written as Chrome trace-event JSON (Perfetto,
// chrome://tracing), and the measured bubble of each track.
//
// Tracks are actors ("stage 0"). Categories: "forward", "backward", "optimizer" (busy), "send",
// "idle" (waiting for a message). Times are microseconds since the recorder was made. Recording is
// thread-safe; a disabled recorder records nothing and costs a branch.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class TraceRecorder {
 public:
  explicit TraceRecorder(bool enabled = true);
  bool enabled() const { return enabled_; }

  int track(const std::string& name);
  double now_us() const;
  void span(int track, std::string_view name, std::string_view category, double begin_us, double end_us,
            int microbatch = -1);
  // A training step's wall-clock window: bubbles are measured inside windows only.
  void window(double begin_us, double end_us);

  // Chrome trace-event JSON, written to a temporary file and renamed (never half-written); throws
  // troupe::Error (kIo) naming the path when it cannot be written.
  void write_chrome_trace(const std::string& path) const;

  struct TrackStats {
    std::string name;
    double busy_us = 0.0;    // union of forward, backward and optimizer spans inside the windows
    double window_us = 0.0;  // total length of the windows
    double bubble = 0.0;     // 1 - busy / window
  };
  std::vector<TrackStats> track_stats() const;

 private:
  struct Span {
    int track;
    std::string name, category;
    double begin, end;
    int microbatch;
  };
  bool enabled_;
  std::chrono::steady_clock::time_point origin_;
  mutable std::mutex mutex_;
  std::vector<std::string> tracks_;
  std::vector<Span> spans_;
  std::vector<std::pair<double, double>> windows_;
};

// The schedule's ideal bubble: (p-1)/(m+p-1) for gpipe and 1f1b, (p-1)/(v*m+p-1) for interleaved.
double theoretical_bubble(std::string_view schedule, int p, int m, int v);

}  // namespace troupe
