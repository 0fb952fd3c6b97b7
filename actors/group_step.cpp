// step_group: a group step's messages mapped onto supervision::GroupRound.
#include "actors/group_step.h"

#include <string>

#include <fmt/format.h>

#include "actors/protocol.h"
#include "actors/replica_actor.h"
#include "runtime/supervision/group_round.h"

namespace troupe {

void step_group(caf::scoped_actor& self, std::int64_t step, const std::vector<caf::actor>& coordinators,
                std::vector<StepStats>& stats, const GroupStepHooks& hooks, std::uint64_t& round,
                std::chrono::milliseconds quiet_timeout) {
  const int members = static_cast<int>(coordinators.size());
  supervision::GroupRound g(members, round);
  // Every member but `m` stops with the report (another member failed for good).
  auto stop_others = [&](int m, std::int32_t kind, const std::string& report) {
    for (int i = 0; i < members; ++i)
      if (i != m) self->send(coordinators[static_cast<std::size_t>(i)], proto::stop_atom::value, kind, report);
  };
  while (!g.complete()) {
    self->receive(
        [&](proto::done_atom, int m, StepStats& s) {
          if (g.done(m)) stats[static_cast<std::size_t>(m)] = std::move(s);
        },
        [&](proto::failed_atom, int m, std::int32_t kind, std::string& report) {
          if (!g.failed(m)) return;
          // The others first: an actor of theirs that the killed groups end is then no restart of theirs.
          stop_others(m, kind, report);
          hooks.failed(m, replica_failure(kind, report));  // kills the groups: whatever waits in them ends now
        },
        [&](proto::interrupted_atom, int, std::int64_t, std::uint64_t r) {
          if (!g.interrupted(r)) return;  // stale, or covered by the coming re-run
          hooks.abort();
          for (const caf::actor& c : coordinators) self->send(c, proto::abandon_atom::value, step, g.round());
        },
        [&](proto::quiet_atom, int m, std::uint64_t r) {
          if (!g.quiet(m, r)) return;
          hooks.reform();
          for (const caf::actor& c : coordinators) self->send(c, proto::rerun_atom::value, step, g.round());
        },
        // A member that does not go quiet in time (none of its collectives can wait longer) is stuck: the
        // step ends with an error naming it instead of waiting forever.
        caf::after(quiet_timeout) >> [&] {
          const int stuck = g.stuck();
          if (stuck < 0) return;
          const std::string report =
              fmt::format("{} did not abandon step {} within {:.1f} s after every member of its group was told to "
                          "abandon it (an actor of it is stuck); the job stops",
                          hooks.name(stuck), step, std::chrono::duration<double>(quiet_timeout).count());
          g.give_up(stuck);
          stop_others(stuck, static_cast<std::int32_t>(ErrorKind::kInternal), report);
          hooks.failed(stuck, Error(ErrorKind::kInternal, report));
        });
  }
  round = g.round();
}

}  // namespace troupe
