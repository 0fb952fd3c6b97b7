// ProgressReporter: carriage-return updates on a TTY, every ~5% of the run otherwise.
#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "runtime/model_flops.h"

namespace troupe {

ProgressReporter::ProgressReporter(std::FILE* out, std::int64_t total_steps, std::string unit, std::FILE* log)
    : out_(out), total_(total_steps), unit_(std::move(unit)), log_(log), live_(isatty(fileno(out)) != 0),
      log_every_(std::max<std::int64_t>(1, total_steps / 20)) {}

void ProgressReporter::show_mfu(double flops_per_unit, double peak_flops_per_s) {
  flops_per_unit_ = flops_per_unit;
  peak_flops_per_s_ = peak_flops_per_s;
}

void ProgressReporter::step(std::int64_t step, double loss, double lr, double per_s, double elapsed_s) {
  char mfu_text[32] = "";
  if (flops_per_unit_ > 0.0 && peak_flops_per_s_ > 0.0)
    std::snprintf(mfu_text, sizeof mfu_text, " MFU %.1f%%",
                  100.0 * mfu(model_flops_per_s(flops_per_unit_, per_s), peak_flops_per_s_));
  const double eta = step > 0 ? elapsed_s / static_cast<double>(step) * static_cast<double>(total_ - step) : 0.0;
  const bool plain_due = step == 1 || step % log_every_ == 0 || step == total_;
  auto plain = [&](std::FILE* f) {
    std::fprintf(f, "step %lld/%lld loss %.4f lr %.3g %s/s %.0f%s elapsed %.1fs eta %.0fs\n",
                 static_cast<long long>(step), static_cast<long long>(total_), loss, lr, unit_.c_str(), per_s, mfu_text,
                 elapsed_s, eta);
    std::fflush(f);
  };
  if (live_) {
    std::fprintf(out_, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.3g  %.0f %s/s%s  ETA %.0fs", static_cast<long long>(step),
                 static_cast<long long>(total_), loss, lr, per_s, unit_ == "tokens" ? "tok" : unit_.c_str(), mfu_text, eta);
    std::fflush(out_);
    line_open_ = true;
  } else if (plain_due) {
    plain(out_);
  }
  if (log_ && plain_due) plain(log_);
}

void ProgressReporter::message(const std::string& line) {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
  if (log_) {
    std::fprintf(log_, "%s\n", line.c_str());
    std::fflush(log_);
  }
}

void ProgressReporter::finish() {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
}

}  // namespace troupe
