// RestartIntensity: the sliding-window count of restarts, and the escalation's words.
#include "runtime/supervision/restart_intensity.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::supervision {

RestartIntensity::RestartIntensity(int max_restarts, double window_s) : max_(max_restarts), window_(window_s) {
  TROUPE_CHECK(max_restarts >= 0 && window_s > 0.0, "restart intensity ", max_restarts, " in ", window_s, " s");
}

int RestartIntensity::recent(double now_s) const {
  int n = 0;
  for (const Restart& r : restarts_) n += now_s - r.at_s < window_ ? 1 : 0;
  return n;
}

bool RestartIntensity::allow(const std::string& child, std::int64_t step, const std::string& cause, double now_s) {
  if (recent(now_s) >= max_) return false;
  restarts_.push_back({child, step, cause, now_s});
  if (observer_) observer_(restarts_.size() - 1, restarts_.back());
  return true;
}

void RestartIntensity::rerun(double now_s) {
  for (std::size_t i = 0; i < restarts_.size(); ++i)
    if (restarts_[i].restarted_s < 0.0) {
      restarts_[i].restarted_s = now_s - restarts_[i].at_s;
      if (observer_) observer_(i, restarts_[i]);
    }
}

void RestartIntensity::recovered(double now_s) {
  rerun(now_s);  // a death between steps: the next step is its re-run
  for (std::size_t i = 0; i < restarts_.size(); ++i)
    if (restarts_[i].recovery_s < 0.0) {
      restarts_[i].recovery_s = now_s - restarts_[i].at_s;
      if (observer_) observer_(i, restarts_[i]);
    }
}

std::string RestartIntensity::escalation(const std::string& place, std::int64_t step, const std::string& cause,
                                         const std::string& checkpoint_dir) const {
  const std::string when = step >= 0 ? fmt::format("in step {}", step) : std::string("between steps");
  std::string out =
      max_ == 0 ? fmt::format("{} died {}: {}\nno restart: fault.max_restarts = 0", place, when, cause)
                : fmt::format("{} died {}: {}\nthe supervisor gives up: that is more than fault.max_restarts = {} "
                              "restarts within fault.restart_window_s = {} s",
                              place, when, cause, max_, window_);
  if (!restarts_.empty()) {
    out += fmt::format("; the {} restart{} before:", restarts_.size(), restarts_.size() == 1 ? "" : "s");
    for (const Restart& r : restarts_)
      out += fmt::format("\n  {} {}: {}", r.child, r.step >= 0 ? fmt::format("in step {}", r.step) : "between steps",
                         r.cause);
  }
  out += checkpoint_dir.empty()
             ? "\nthe job stops; with train.checkpoint_dir set, `troupe train --resume DIR` would continue it from "
               "the newest checkpoint"
             : fmt::format("\nthe job stops; `troupe train --resume {}` continues it from the newest checkpoint",
                           checkpoint_dir);
  if (escalation_observer_) escalation_observer_(out);
  return out;
}

}  // namespace troupe::supervision
