// Owns GroupRound: the plain state machine of one step of a group whose members re-run an interrupted
// step together — the replicas of a data-parallel job, the D x T pipelines of a tensor-parallel one —
// who answered, whose abandon is outstanding, which round of abandon and re-run orders is current, and
// whether the step failed for good; so that the actor code that drives a step (actors/group_step.h)
// only maps its messages to it, and the round logic is tested without actors.
//
// A round: a member restarted one of its actors mid-step and says so (interrupted); every member is
// ordered to abandon the step (the caller aborts the groups first) and answers quiet once none of its
// actors uses a group; when the last is quiet the groups are reformed and every member re-runs the step.
// Answers from before the round's abandon order are void. A member that fails for good stops the step.
#pragma once

#include <cstdint>
#include <vector>

namespace troupe::supervision {

class GroupRound {
 public:
  // `members` >= 1; `round`: the last round number given out (rounds count over every step).
  GroupRound(int members, std::uint64_t round);

  // Member m finished the step: true when the answer counts (false: void — it came before the round's
  // abandon order reached m — or m had answered already).
  bool done(int m);
  // Member m failed for good: true for the step's first such failure (the caller stops every other
  // member); m counts as answered either way.
  bool failed(int m);
  // A member was interrupted, as of round `round`: true when this starts a new round (round() is its
  // number): the caller aborts the groups and orders every member to abandon the step. False for a stale
  // report, one covered by the round under way, or after the step stopped.
  bool interrupted(std::uint64_t round);
  // Member m is quiet in round `round`: true when it was the last one — the caller reforms the groups
  // and orders every member to re-run the step.
  bool quiet(int m, std::uint64_t round);
  // A round under way found no quiet from member `stuck()` in time: it counts as answered, and the step
  // stops (the caller reports it and stops the others).
  int stuck() const;
  void give_up(int m);

  bool complete() const { return answers_ == static_cast<int>(answered_.size()); }
  bool aborting() const { return aborting_; }
  bool stopped() const { return stopped_; }
  std::uint64_t round() const { return round_; }

 private:
  void answer(int m);

  std::vector<char> answered_, waiting_quiet_;
  int answers_ = 0;
  bool aborting_ = false, stopped_ = false;
  std::uint64_t round_;
};

}  // namespace troupe::supervision
