// Owns ForwardedRestarts: rank 0's log of the actor restarts that rank processes made inside themselves (a
// replica's stage or optimizer-state actor restarted by that process's own supervisor), which each process
// sends rank 0 as they happen (runtime/process/rank_reports.h), so that rank 0's report lists every restart
// of the job, once; and the text form of one such report.
//
// Counting: each replica's supervisor counts its own actors' restarts against fault.max_restarts, in
// whichever process it runs — rank 0's as much as any other's. Rank 0 lists a forwarded restart but does
// not count it again; and a re-form of the group that such a restart caused (the whole step re-run on every
// process) is that restart, not another one of the group (explains_reform), just as rank 0 counts no
// re-form that a restart of one of its own actors caused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/supervision/restart_intensity.h"

namespace troupe::supervision {

// One restart as a rank process reports it.
struct ForwardedRestart {
  int rank = 0;           // the rank process whose supervisor restarted the actor
  std::size_t index = 0;  // its place in that process's log: a restart is sent again when its times are known
  Restart restart;        // child as that process names it ("replica 1/stage 0"), times on its clock
};

// The report's text: one line of numbers, then the child's and the cause's bytes (any bytes, newlines too).
std::string encode_forwarded_restart(const ForwardedRestart& r);
// nullopt when `text` is not such a report (another kind of report, or damaged).
std::optional<ForwardedRestart> decode_forwarded_restart(std::string_view text);

// A rank process's supervisor gave up (past fault.max_restarts): its escalation, which ends that process and,
// as rank 0's own supervisor's would, the job.
struct ForwardedEscalation {
  int rank = 0;
  std::string escalation;  // RestartIntensity::escalation's words
};
std::string encode_forwarded_escalation(const ForwardedEscalation& e);
std::optional<ForwardedEscalation> decode_forwarded_escalation(std::string_view text);

class ForwardedRestarts {
 public:
  // A report from process `pid`: a new restart, or one already known (the same pid and index) whose
  // re-run or recovery time it now carries.
  void add(long pid, const ForwardedRestart& r);
  // The restarts as rank 0 lists them, in the order they first arrived: child "rank R/<child>" (for example
  // "rank 1/replica 1/stage 0"), step, cause and the times the process measured.
  std::vector<Restart> restarts() const;
  std::size_t size() const { return entries_.size(); }
  // Rank 0 re-forms the group in `step` and no rank process died: true when a restart forwarded from that
  // step or the one before, or from between steps, not yet used so, explains it (it is then used). The step
  // before: a rank whose actor died in the update of step S (after the step's collectives) leaves rank 0
  // already in step S + 1, where it meets the broken group.
  bool explains_reform(std::int64_t step);

  // Process `pid` escalated: rank 0 stops the job when it finds that process ended, instead of restarting it.
  void add_escalation(long pid, const ForwardedEscalation& e);
  // The escalation process `pid` reported, if any.
  std::optional<ForwardedEscalation> escalation_of(long pid) const;

 private:
  struct Entry {
    long pid = 0;
    ForwardedRestart forwarded;
    bool explained = false;  // a re-form of the group was this restart
  };
  std::vector<Entry> entries_;
  std::vector<std::pair<long, ForwardedEscalation>> escalations_;  // by process
};

}  // namespace troupe::supervision
