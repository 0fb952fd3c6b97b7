// Rank reports: written by a rank process on its heartbeat pipe, read back by rank 0's heartbeat monitor.
#include "runtime/process/rank_reports.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "runtime/process/heartbeat.h"

namespace troupe {

bool has_rank_zero() { return std::getenv(kHeartbeatEnv) != nullptr; }

bool report_to_rank_zero(std::string_view report) {
  if (!has_rank_zero()) return false;
  const std::size_t n = std::min(report.size(), kMaxRankReport);
  std::string frame(5 + n, '\0');
  frame[0] = kReportByte;
  for (int i = 0; i < 4; ++i) frame[1 + i] = static_cast<char>((n >> (8 * i)) & 0xff);
  std::copy_n(report.data(), n, frame.data() + 5);
  // A rank 0 that is gone closed the read end: EPIPE, not a SIGPIPE that would end this process (its
  // parent watch ends it, saying why).
  sigset_t pipe, old;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  ssize_t wrote = -1;
  do wrote = ::write(kHeartbeatFd, frame.data(), frame.size());
  while (wrote < 0 && errno == EINTR);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return wrote == static_cast<ssize_t>(frame.size());
}

std::vector<std::string> RankReportReader::feed(std::span<const char> bytes) {
  std::vector<std::string> reports;
  for (char c : bytes) {
    if (pending_.empty()) {
      if (c == kReportByte) pending_.push_back(c);  // anything else is a beat
      continue;
    }
    pending_.push_back(c);
    if (pending_.size() < 5) continue;
    std::size_t n = 0;
    for (int i = 0; i < 4; ++i) n |= static_cast<std::size_t>(static_cast<unsigned char>(pending_[1 + i])) << (8 * i);
    if (n > kMaxRankReport) {  // not a frame this side writes: dropped, the next byte starts afresh
      pending_.clear();
      continue;
    }
    if (pending_.size() == 5 + n) {
      reports.push_back(pending_.substr(5));
      pending_.clear();
    }
  }
  return reports;
}

}  // namespace troupe
