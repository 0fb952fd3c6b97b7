// Owns RestartIntensity: Erlang/OTP's restart intensity for a one-for-one supervisor, as a plain state
// machine — at most max_restarts restarts within any window of window_s seconds, then escalate — with
// the time passed in, so that it is tested without actors or clocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace troupe::supervision {

// One restart a supervisor made.
struct Restart {
  std::string child;    // the node's name ("replica 0/stage 1")
  std::int64_t step;    // the step it died in; -1 between steps
  std::string cause;
  double at_s;          // when it died, on the caller's clock
  double restarted_s = -1.0;  // from the death to the step's re-run order (respawn, rewind waits); -1 until then
  double recovery_s = -1.0;  // from the death to the end of the re-run step (or, between steps, of the
                             // next step); -1 until known
};

class RestartIntensity {
 public:
  // max_restarts >= 0, window_s > 0 (fault.max_restarts, fault.restart_window_s).
  RestartIntensity(int max_restarts, double window_s);

  // `child` died at `now_s` (seconds, non-decreasing between calls): true when one more restart is
  // allowed — it is recorded — and false when it would be the (max_restarts + 1)-th within the window:
  // the supervisor escalates instead (nothing is recorded).
  bool allow(const std::string& child, std::int64_t step, const std::string& cause, double now_s);
  // The interrupted step was ordered again at `now_s`: every restart not yet re-run took now_s - its death.
  void rerun(double now_s);
  // The re-run step ended at `now_s`: every restart not yet recovered took now_s - its death.
  void recovered(double now_s);

  // Called on the supervisor's thread whenever the log changes: a restart recorded (allow), or its re-run or
  // recovery time set; `index` is its place in restarts(). A rank process forwards its restarts to rank 0
  // so (forwarded_restarts.h). Set it before the first death.
  using Observer = std::function<void(std::size_t index, const Restart& restart)>;
  void observe(Observer observer) { observer_ = std::move(observer); }
  // Called with the escalation's words whenever escalation() makes them (the supervisor gives up).
  using EscalationObserver = std::function<void(const std::string& escalation)>;
  void observe_escalation(EscalationObserver observer) { escalation_observer_ = std::move(observer); }

  // Every restart so far, oldest first.
  const std::vector<Restart>& restarts() const { return restarts_; }
  // Restarts within the window ending at now_s.
  int recent(double now_s) const;
  int max_restarts() const { return max_; }
  double window_s() const { return window_; }

  // The error that ends the job when allow() said no: `place` (the child as its Topology names it)
  // failed in `step` of `cause`, past the intensity; each earlier restart by step and cause; and how to
  // continue (`--resume` when `checkpoint_dir` is set, else how to get checkpoints next time). The
  // escalation observer hears it.
  std::string escalation(const std::string& place, std::int64_t step, const std::string& cause,
                         const std::string& checkpoint_dir) const;

 private:
  int max_;
  double window_;
  std::vector<Restart> restarts_;
  Observer observer_;
  EscalationObserver escalation_observer_;
};

}  // namespace troupe::supervision
