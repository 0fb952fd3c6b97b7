// ReplicaProcesses: fork/exec of the rank processes, their environment, and their supervision.
#include "cli/replica_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "runtime/error.h"

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

ReplicaProcesses::ReplicaProcesses(const std::string& program, const std::vector<std::string>& args, int replicas,
                                   const std::string& secret) {
  for (int r = 1; r < replicas; ++r) {
    std::vector<std::string> argv_s = {program};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    argv_s.push_back("--rank");
    argv_s.push_back(std::to_string(r));
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
      kill_all();
      throw Error(ErrorKind::kIo, std::string("cannot start data-parallel rank ") + std::to_string(r) + ": fork: " +
                                      std::strerror(errno));
    }
    if (pid == 0) {
      // Child: quiet stdout, the secret in the environment, then become the rank.
      const int devnull = open("/dev/null", O_WRONLY);
      if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
      setenv("TROUPE_SECRET", secret.c_str(), 1);
      execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "troupe: error: cannot start data-parallel rank %d: exec: %s\n", r, std::strerror(errno));
      _exit(127);
    }
    children_.push_back(pid);
  }
}

ReplicaProcesses::~ReplicaProcesses() { kill_all(); }

void ReplicaProcesses::kill_all() {
  for (pid_t pid : children_)
    if (pid > 0) kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (pid_t& pid : children_) {
    if (pid <= 0) continue;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid = -1;
  }
}

std::string ReplicaProcesses::wait_all() {
  std::string first;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    pid_t& pid = children_[i];
    if (pid <= 0) continue;
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) continue;
    pid = -1;
    const int rank = static_cast<int>(i) + 1;
    if (first.empty()) {
      if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        first = "rank " + std::to_string(rank) + " exited with status " + std::to_string(WEXITSTATUS(status));
      else if (WIFSIGNALED(status))
        first = "rank " + std::to_string(rank) + " was killed by signal " + std::to_string(WTERMSIG(status));
    }
  }
  return first;
}

}  // namespace troupe
