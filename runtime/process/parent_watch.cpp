// The parent watch: a thread blocked on the pipe rank 0 holds open, ending this process when it closes.
#include "runtime/process/parent_watch.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <unistd.h>

namespace troupe {

void watch_parent_from_environment(const std::string& who) {
  const char* fd_text = std::getenv(kParentWatchEnv);
  if (!fd_text) return;
  const int fd = std::atoi(fd_text);
  const std::string message = std::string("troupe: ") + who + ": the process that started it (its rank 0) is gone; exiting\n";
  std::thread([fd, message] {
    char byte = 0;
    ssize_t got = 0;
    do {
      got = ::read(fd, &byte, 1);  // rank 0 never writes: only its end (EOF) or an error returns
    } while (got < 0 && errno == EINTR);
    [[maybe_unused]] const ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
    std::_Exit(1);  // nothing of an orphan rank's is worth saving, and no rank 0 is left to hear of it
  }).detach();
}

}  // namespace troupe
