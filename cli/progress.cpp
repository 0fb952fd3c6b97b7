// ProgressReporter: carriage-return updates on a TTY, every ~5% of the run otherwise.
#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>

namespace troupe {

ProgressReporter::ProgressReporter(std::FILE* out, std::int64_t total_steps)
    : out_(out), total_(total_steps), live_(isatty(fileno(out)) != 0),
      log_every_(std::max<std::int64_t>(1, total_steps / 20)) {}

void ProgressReporter::step(std::int64_t step, double loss, double lr, double tokens_per_s, double elapsed_s) {
  const std::int64_t done = step + 1;
  const double eta = done ? elapsed_s / static_cast<double>(done) * static_cast<double>(total_ - done) : 0.0;
  if (live_) {
    std::fprintf(out_, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s  ETA %.0fs", static_cast<long long>(done),
                 static_cast<long long>(total_), loss, lr, tokens_per_s, eta);
    std::fflush(out_);
    line_open_ = true;
  } else if (step == 0 || done % log_every_ == 0 || done == total_) {
    std::fprintf(out_, "step %lld/%lld loss %.4f lr %.3g tokens/s %.0f elapsed %.1fs eta %.0fs\n",
                 static_cast<long long>(done), static_cast<long long>(total_), loss, lr, tokens_per_s, elapsed_s, eta);
    std::fflush(out_);
  }
}

void ProgressReporter::message(const std::string& line) {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void ProgressReporter::finish() {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
}

}  // namespace troupe
