// The stop-signal handler: a flag for the first signal, an immediate clean exit for the second.
#include "runtime/signals/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

#include "runtime/io/partial_files.h"

namespace troupe {

namespace {

std::atomic<int> g_signal{0};
constexpr int kMaxChildren = 1024;
std::atomic<pid_t> g_children[kMaxChildren];

extern "C" void on_stop_signal(int signo) {
  int expected = 0;
  if (g_signal.compare_exchange_strong(expected, signo)) return;  // the first: stop at the step boundary
  remove_partial_paths();
  for (auto& child : g_children)
    if (const pid_t pid = child.load(); pid > 0) ::kill(pid, SIGKILL);
  ::_exit(128 + signo);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int stop_signal() { return g_signal.load(); }

void register_child_process(pid_t pid) {
  for (auto& child : g_children) {
    pid_t expected = 0;
    if (child.compare_exchange_strong(expected, pid)) return;
  }
}

void unregister_child_process(pid_t pid) {
  for (auto& child : g_children) {
    pid_t expected = pid;
    if (child.compare_exchange_strong(expected, 0)) return;
  }
}

}  // namespace troupe
