// ReplicaProcesses: fork/exec of the rank processes, their environment, and their supervision.
#include "runtime/process/replica_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "runtime/error.h"
#include "runtime/process/heartbeat.h"
#include "runtime/process/parent_watch.h"
#include "runtime/signals/stop_signal.h"

namespace troupe {

std::string random_secret() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char bytes[16];
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof bytes))
    throw Error(ErrorKind::kIo, "cannot read /dev/urandom for the job's shared secret; set TROUPE_SECRET instead");
  std::string hex;
  for (unsigned char b : bytes) {
    char buf[3];
    std::snprintf(buf, sizeof buf, "%02x", b);
    hex += buf;
  }
  return hex;
}

namespace {

// How a reaped child ended, for messages.
std::string exit_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended";
}

// Reaps `pid`, killing it (SIGKILL) if it has not exited by `deadline`; returns its wait status.
int reap_by(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  unregister_child_process(pid);
  return status;
}

}  // namespace

ReplicaProcesses::ReplicaProcesses(const std::string& program, const std::vector<std::string>& args, int replicas,
                                   const std::string& secret, std::chrono::milliseconds heartbeat_limit)
    : program_(program), args_(args), secret_(secret) {
  if (heartbeat_limit.count() > 0)
    heartbeats_ = std::make_unique<HeartbeatMonitor>(heartbeat_limit, [this, heartbeat_limit](int rank, pid_t pid, double silent_s) {
      char text[320];
      std::snprintf(text, sizeof text,
                    "rank %d (process %d) sent no heartbeat for %.2f s (the limit is %.1f s, half of comm.timeout_s): "
                    "it hung or was stopped, so rank 0 killed it (SIGKILL) and treats it as dead",
                    rank, static_cast<int>(pid), silent_s, heartbeat_limit.count() / 1000.0);
      {
        std::lock_guard lock(hung_mu_);  // before the kill: whoever reaps it learns why it died
        hung_.emplace(rank, text);
      }
      ::kill(pid, SIGKILL);  // a stopped process dies of it too; its links close, so its peers fail now
      std::fprintf(stderr, "troupe: %s\n", text);
    });
  for (int r = 1; r < replicas; ++r) {
    try {
      children_.push_back(spawn(r, {}));
    } catch (...) {
      kill_all();
      throw;
    }
  }
}

pid_t ReplicaProcesses::spawn(int r, const std::vector<std::pair<std::string, std::string>>& env) {
  // Everything the child needs is built here: between fork and exec a multi-threaded parent's child
  // may only make async-signal-safe calls (no allocation, no setenv).
  std::vector<std::string> argv_s = {program_};
  argv_s.insert(argv_s.end(), args_.begin(), args_.end());
  argv_s.push_back("--rank");
  argv_s.push_back(std::to_string(r));
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::pair<std::string, std::string>> overrides = {{"TROUPE_SECRET", secret_},
                                                                 {kParentWatchEnv, std::to_string(kParentWatchFd)}};
  if (heartbeats_)
    overrides.emplace_back(kHeartbeatEnv, std::to_string(heartbeat_interval(heartbeats_->limit()).count()));
  overrides.insert(overrides.end(), env.begin(), env.end());
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    bool replaced = false;
    for (const auto& [name, value] : overrides) replaced = replaced || entry.rfind(name + "=", 0) == 0;
    if (!replaced) env_s.push_back(entry);
  }
  for (const auto& [name, value] : overrides) env_s.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  // The parent watch (parent_watch.h): the child reads, this process holds the write end until the
  // child is reaped. Both ends close on exec, so no other child inherits them.
  int watch[2];
  if (pipe2(watch, O_CLOEXEC) != 0)
    throw Error(ErrorKind::kIo, "cannot start rank " + std::to_string(r) + ": pipe: " + std::strerror(errno));
  // The heartbeat (heartbeat.h): the child writes, this process reads.
  int beat[2] = {-1, -1};
  if (heartbeats_ && pipe2(beat, O_CLOEXEC) != 0) {
    close(watch[0]);
    close(watch[1]);
    throw Error(ErrorKind::kIo, "cannot start rank " + std::to_string(r) + ": pipe: " + std::strerror(errno));
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(watch[0]);
    close(watch[1]);
    if (beat[0] >= 0) close(beat[0]), close(beat[1]);
    throw Error(ErrorKind::kIo, "cannot start rank " + std::to_string(r) + ": fork: " + std::strerror(errno));
  }
  if (pid == 0) {
    // The read end, at the agreed number, kept across exec (dup2 clears close-on-exec on the copy).
    if (watch[0] == kParentWatchFd) fcntl(watch[0], F_SETFD, 0);
    else dup2(watch[0], kParentWatchFd);
    if (beat[1] == kHeartbeatFd) fcntl(beat[1], F_SETFD, 0);
    else if (beat[1] >= 0) dup2(beat[1], kHeartbeatFd);
    // Child: quiet stdout (rank 0 reports for everyone), then become the rank.
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    // Ctrl-C reaches the whole process group; rank 0 alone decides when the run stops (at a step
    // boundary) and then stops its children, so a child must not die mid-step of the same SIGINT.
    // Ignored dispositions survive execve.
    ::signal(SIGINT, SIG_IGN);
    execve(program_.c_str(), argv.data(), envp.data());
    static const char msg[] = "troupe: error: cannot start a rank process: exec failed\n";
    [[maybe_unused]] const ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  close(watch[0]);
  watch_fds_[pid] = watch[1];
  if (beat[0] >= 0) {
    close(beat[1]);
    heartbeats_->watch(r, pid, beat[0]);
  }
  register_child_process(pid);  // an abort (a second Ctrl-C) kills it
  return pid;
}

std::string ReplicaProcesses::restart(int rank, const std::vector<std::pair<std::string, std::string>>& env) {
  std::lock_guard lock(mu_);
  TROUPE_CHECK(rank >= 1 && rank <= static_cast<int>(children_.size()), "restart of rank ", rank);
  pid_t& pid = children_[static_cast<std::size_t>(rank - 1)];
  std::string ended = "was already reaped";
  if (pid > 0) {
    // Its link broke, so it is dead or dying; one that still runs (stuck) is killed after 2 s.
    ended = exit_text(reap_by(pid, std::chrono::steady_clock::now() + std::chrono::seconds(2)));
    close_watch(pid);
    pid = -1;
  }
  pid = spawn(rank, env);
  std::lock_guard hung_lock(hung_mu_);
  hung_.erase(rank);
  return ended;
}

std::string ReplicaProcesses::hung() const {
  std::lock_guard lock(hung_mu_);
  return hung_.empty() ? std::string() : hung_.begin()->second;
}

std::vector<ReplicaProcesses::Ended> ReplicaProcesses::exited() {
  std::lock_guard lock(mu_);
  std::vector<Ended> out;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    pid_t& pid = children_[i];
    int status = 0;
    if (pid <= 0 || waitpid(pid, &status, WNOHANG) != pid) continue;
    unregister_child_process(pid);
    close_watch(pid);
    const int rank = static_cast<int>(i) + 1;
    Ended e{rank, pid, exit_text(status)};
    {
      std::lock_guard hung_lock(hung_mu_);
      if (hung_.count(rank))
        e.how = "sent no heartbeat for the limit (half of comm.timeout_s): it hung or was stopped, so rank 0 killed "
                "it (SIGKILL)";
    }
    pid = -1;
    out.push_back(std::move(e));
  }
  return out;
}

pid_t ReplicaProcesses::pid_of(int rank) {
  std::lock_guard lock(mu_);
  return children_.at(static_cast<std::size_t>(rank - 1));
}

std::vector<ReplicaProcesses::Report> ReplicaProcesses::take_reports() {
  std::vector<Report> out;
  if (heartbeats_)
    for (HeartbeatMonitor::Report& r : heartbeats_->take_reports()) out.push_back({r.rank, r.pid, std::move(r.text)});
  return out;
}

ReplicaProcesses::~ReplicaProcesses() {
  heartbeats_.reset();  // no verdicts on children being stopped
  kill_all();
  std::lock_guard lock(mu_);
  for (const auto& [pid, fd] : watch_fds_) close(fd);
  watch_fds_.clear();
}

void ReplicaProcesses::close_watch(pid_t pid) {
  const auto it = watch_fds_.find(pid);
  if (it == watch_fds_.end()) return;
  close(it->second);
  watch_fds_.erase(it);
}

void ReplicaProcesses::kill_all() {
  std::lock_guard lock(mu_);
  for (pid_t pid : children_)
    if (pid > 0) kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (pid_t& pid : children_) {
    if (pid <= 0) continue;
    reap_by(pid, deadline);
    pid = -1;
  }
}

std::string ReplicaProcesses::wait_all() {
  std::lock_guard lock(mu_);
  std::string first;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    pid_t& pid = children_[i];
    if (pid <= 0) continue;
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) continue;
    unregister_child_process(pid);
    pid = -1;
    const int rank = static_cast<int>(i) + 1;
    if (first.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      first = "rank " + std::to_string(rank) + " " + exit_text(status);
  }
  return first;
}

}  // namespace troupe
