// Owns the communication lowering pass: compute-only schedule -> schedule with sends and receives.
#include "runtime/schedule/comm_pass.h"

#include <string>

#include "runtime/error.h"

namespace troupe::pipeline {

Schedule add_communication(const Schedule& schedule, int p, int v) {
  if (p < 1 || v < 1)
    throw Error(ErrorKind::kInput, "add_communication: stages and virtual stages must be >= 1, got " +
                                       std::to_string(p) + " and " + std::to_string(v));
  if (schedule.size() != static_cast<std::size_t>(p))
    throw Error(ErrorKind::kInput, "add_communication: schedule has " + std::to_string(schedule.size()) +
                                       " stage programs but the pipeline has " + std::to_string(p) + " stages");
  const Layout layout{p, v};
  const int last = layout.num_virtual() - 1;
  Schedule out(schedule.size());
  for (int s = 0; s < p; ++s) {
    const Program& in = schedule[static_cast<std::size_t>(s)];
    Program& program = out[static_cast<std::size_t>(s)];
    program.reserve(in.size() * 3);
    for (std::size_t i = 0; i < in.size(); ++i) {
      const Instr& instr = in[i];
      auto where = [&] { return "stage " + std::to_string(s) + " instruction " + std::to_string(i) + " (" +
                                to_string(instr) + ")"; };
      if (is_communication(instr))
        throw Error(ErrorKind::kInput, "add_communication: the schedule already has communication at " + where() +
                                           "; pass a compute-only schedule");
      if (!is_compute(instr)) {
        program.push_back(instr);
        continue;
      }
      const int mb = microbatch_of(instr), chunk = chunk_of(instr);
      if (chunk < 0 || chunk >= v)
        throw Error(ErrorKind::kInput, "add_communication: chunk out of range at " + where() + ": chunks are 0.." +
                                           std::to_string(v - 1));
      const int k = layout.virtual_stage(s, chunk);
      // A neighbour on the same physical stage (p == 1) needs no message.
      const bool prev_remote = k > 0 && layout.stage_of(k - 1) != s;
      const bool next_remote = k < last && layout.stage_of(k + 1) != s;
      if (std::holds_alternative<Forward>(instr)) {
        if (prev_remote) program.push_back(RecvActivation{mb, chunk});
        program.push_back(instr);
        if (next_remote) program.push_back(SendActivation{mb, chunk});
      } else {
        if (next_remote) program.push_back(RecvGrad{mb, chunk});
        program.push_back(instr);
        if (prev_remote) program.push_back(SendGrad{mb, chunk});
      }
    }
  }
  return out;
}

}  // namespace troupe::pipeline
