// Owns GroupAborted: the error a collective throws when its group's step was abandoned on purpose — a
// supervisor re-runs the step on every member — as opposed to a member that died or timed out.
//
// Whoever catches it knows that nothing is wrong with this member: it abandons the step and waits for
// the re-run order, instead of dying and being restarted itself (actors/stage_actor.h).
#pragma once

#include <string>

#include "runtime/error.h"

namespace troupe::comm {

class GroupAborted : public Error {
 public:
  explicit GroupAborted(const std::string& message) : Error(ErrorKind::kIo, message) {}
};

}  // namespace troupe::comm
