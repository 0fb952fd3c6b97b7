// Owns the reports a rank process sends its rank 0 beside its heartbeats, on the same pipe (heartbeat.h):
// what happened inside the process that rank 0 must know to tell the whole job's story, such as an actor
// restarted there by the process's own supervisor (runtime/supervision/forwarded_restarts.h).
//
// On the pipe a beat is the byte kBeatByte; a report is kReportByte, its length (4 bytes, little-endian)
// and its bytes, all in one write() of at most PIPE_BUF bytes, which the kernel never interleaves with
// another writer's (the beating thread's): so a report is never cut by a beat.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

inline constexpr char kBeatByte = 1;
inline constexpr char kReportByte = 2;
// A report's bytes at most, so that with its 5-byte header it stays under Linux's PIPE_BUF (4096): a longer
// report is cut to this length.
inline constexpr std::size_t kMaxRankReport = 4000;

// Whether this process has a rank 0 to report to: rank 0 started it with heartbeats on.
bool has_rank_zero();
// Sends `report` (cut to kMaxRankReport bytes) to rank 0; false when there is no rank 0 to report to or
// the pipe is gone (rank 0 ended). Safe from any thread; blocks only while the pipe is full.
bool report_to_rank_zero(std::string_view report);

// Rank 0's reader of one rank's pipe: the reports in the bytes read, however the reads split them.
class RankReportReader {
 public:
  // The reports that `bytes` (the next bytes read from the pipe) complete, in order; beats are dropped.
  std::vector<std::string> feed(std::span<const char> bytes);
  // Bytes of a report still incomplete.
  std::size_t pending() const { return pending_.size(); }

 private:
  std::string pending_;  // from the first byte of an incomplete report
};

}  // namespace troupe
