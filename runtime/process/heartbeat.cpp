// Heartbeats: the child's beating thread, and rank 0's monitor that polls every child's pipe.
#include "runtime/process/heartbeat.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <span>
#include <utility>
#include <vector>

namespace troupe {

std::chrono::milliseconds heartbeat_interval(std::chrono::milliseconds limit) {
  return std::clamp(limit / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
}

void send_heartbeats_from_environment() {
  const char* ms_text = std::getenv(kHeartbeatEnv);
  if (!ms_text) return;
  const auto interval = std::chrono::milliseconds(std::max(1, std::atoi(ms_text)));
  std::thread([interval] {
    // A rank 0 that is gone closed the read end: the write fails with EPIPE instead of a SIGPIPE that
    // would end this process (the parent watch ends it, saying why).
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    const char beat = 1;
    while (true) {
      const ssize_t wrote = ::write(kHeartbeatFd, &beat, 1);
      if (wrote < 0 && errno != EINTR && errno != EAGAIN) return;
      std::this_thread::sleep_for(interval);
    }
  }).detach();
}

HeartbeatMonitor::HeartbeatMonitor(std::chrono::milliseconds limit,
                                   std::function<void(int rank, pid_t pid, double silent_s)> on_silent)
    : limit_(limit), on_silent_(std::move(on_silent)) {
  thread_ = std::thread([this] { run(); });
}

HeartbeatMonitor::~HeartbeatMonitor() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  thread_.join();
  for (auto& [rank, w] : watched_) ::close(w.fd);
}

void HeartbeatMonitor::watch(int rank, pid_t pid, int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (auto it = watched_.find(rank); it != watched_.end()) {
    read_locked(rank, it->second, now);  // the old process's last reports
    ::close(it->second.fd);
  }
  watched_[rank] = {pid, fd, now, {}};
}

bool HeartbeatMonitor::read_locked(int rank, Watched& w, std::chrono::steady_clock::time_point now) {
  char buf[4096];
  ssize_t got = 0;
  while ((got = ::read(w.fd, buf, sizeof buf)) > 0) {
    w.last = now;
    for (std::string& text : w.reader.feed(std::span<const char>(buf, static_cast<std::size_t>(got))))
      reports_.push_back({rank, w.pid, std::move(text)});
  }
  return !(got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR));
}

std::vector<HeartbeatMonitor::Report> HeartbeatMonitor::take_reports() {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  for (auto& [rank, w] : watched_) read_locked(rank, w, now);  // an end of file is the monitor's to handle
  return std::exchange(reports_, {});
}

void HeartbeatMonitor::run() {
  const int poll_ms = static_cast<int>(std::clamp<long long>(heartbeat_interval(limit_).count(), 5, 100));
  while (true) {
    std::vector<pollfd> fds;
    std::vector<int> ranks;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      for (const auto& [rank, w] : watched_) {
        fds.push_back({w.fd, POLLIN, 0});
        ranks.push_back(rank);
      }
    }
    // Polled without the lock: watch() may add a rank meanwhile (it is polled on the next round).
    if (fds.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
    else ::poll(fds.data(), fds.size(), poll_ms);
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<int, Watched>> silent;
    {
      std::lock_guard lock(mu_);
      for (std::size_t i = 0; i < fds.size(); ++i) {
        auto it = watched_.find(ranks[i]);
        if (it == watched_.end() || it->second.fd != fds[i].fd) continue;  // replaced meanwhile
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
          if (!read_locked(it->first, it->second, now)) {  // the child exited (or exec'd away its end): not a hang
            ::close(it->second.fd);
            watched_.erase(it);
            continue;
          }
        }
      }
      for (auto it = watched_.begin(); it != watched_.end();) {
        if (now - it->second.last > limit_) {
          silent.emplace_back(it->first, it->second);
          ::close(it->second.fd);
          it = watched_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& [rank, w] : silent) on_silent_(rank, w.pid, std::chrono::duration<double>(now - w.last).count());
  }
}

}  // namespace troupe
