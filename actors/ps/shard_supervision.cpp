// Owns the one-for-one supervision of a sync parameter-server cluster's shard actors (see the header).
#include "actors/ps/shard_supervision.h"

#include <cstdio>
#include <utility>

#include <fmt/format.h>

namespace troupe::ps {

std::optional<PsShardSupervision> shard_supervision(const std::vector<supervision::FaultClause>& faults, PsMode mode,
                                                    bool shard_snapshots, int max_restarts, ShardRestartBook book) {
  PsShardSupervision sup;
  for (const supervision::FaultClause& c : faults)
    if (c.target == supervision::FaultTarget::shard) sup.faults.push_back(c);
  const bool asked = shard_snapshots && max_restarts > 0;
  if (mode != PsMode::sync || (!asked && sup.faults.empty())) return std::nullopt;
  sup.on_death = [book](int s, std::int64_t step, const std::string& cause) {
    std::lock_guard lock(*book.mu);
    if (*book.escalated) throw **book.escalated;
    const std::string child = fmt::format("shard {}", s);
    const double died = book.clock_s();
    if (book.supervisor) book.supervisor->on_down(child, step, cause);
    supervision::RestartIntensity& intensity = *book.intensity;
    if (!intensity.allow(child, step, cause, died)) {
      *book.escalated = Error(ErrorKind::kIo, intensity.escalation(book.place(child), step, cause, book.checkpoint_dir));
      throw **book.escalated;
    }
    if (book.supervisor) book.supervisor->on_restart(child);
    std::fprintf(stderr, "troupe: ps shard %d failed in step %lld: %s\ntroupe: restarted ps shard %d from its snapshot "
                         "(restart %d of at most %d within %g s) with the pushes of step %lld it held; the workers ask again\n",
                 s, static_cast<long long>(step), cause.c_str(), s, intensity.recent(died), intensity.max_restarts(),
                 intensity.window_s(), static_cast<long long>(step));
  };
  sup.on_restarted = [book] {
    std::lock_guard lock(*book.mu);
    book.intensity->rerun(book.clock_s());
  };
  return sup;
}

}  // namespace troupe::ps
