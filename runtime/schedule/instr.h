// Owns the pipeline instruction set (Instr), the virtual-stage layout arithmetic and the instructions' text form.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace troupe::pipeline {

// ---------------------------------------------------------------------------------------------------
// Instructions. A pipeline has `p` physical stages (one actor each) and `v` model chunks per stage
// (v = 1 unless the schedule is interleaved). Chunk c of physical stage s is virtual stage
// k = c * p + s; virtual stages 0 .. p*v-1 run the model's layers in order, so a micro-batch's
// activation goes k -> k + 1 and its gradient k + 1 -> k. Every instruction names the micro-batch it
// works on and the local chunk it belongs to; the physical stage is implied by whose program holds it.
//
//   Forward         run chunk `chunk` forward on micro-batch `mb` (keeps its activations)
//   Backward        run chunk `chunk` backward on `mb` (frees those activations, accumulates grads)
//   SendActivation  send the output of Forward{mb, chunk} to virtual stage k + 1
//   RecvActivation  receive the input of Forward{mb, chunk} from virtual stage k - 1
//   SendGrad        send the input-gradient of Backward{mb, chunk} to virtual stage k - 1
//   RecvGrad        receive the output-gradient Backward{mb, chunk} needs from virtual stage k + 1
//   OptimizerStep   apply the accumulated gradients; once per training step, at the end
//
// A stage's program is a Program; a Schedule holds one Program per physical stage, indexed by stage.
// Generators (generators.h) emit compute only (Forward, Backward, OptimizerStep); add_communication
// (comm_pass.h) adds the sends and receives; simulate (simulator.h) checks the result.
// ---------------------------------------------------------------------------------------------------
struct Forward {
  int mb = 0;
  int chunk = 0;
  bool operator==(const Forward&) const = default;
};
struct Backward {
  int mb = 0;
  int chunk = 0;
  bool operator==(const Backward&) const = default;
};
struct SendActivation {
  int mb = 0;
  int chunk = 0;
  bool operator==(const SendActivation&) const = default;
};
struct RecvActivation {
  int mb = 0;
  int chunk = 0;
  bool operator==(const RecvActivation&) const = default;
};
struct SendGrad {
  int mb = 0;
  int chunk = 0;
  bool operator==(const SendGrad&) const = default;
};
struct RecvGrad {
  int mb = 0;
  int chunk = 0;
  bool operator==(const RecvGrad&) const = default;
};
struct OptimizerStep {
  bool operator==(const OptimizerStep&) const = default;
};

// Builds a visitor from lambdas: std::visit(Overloaded{[](const Forward&) {...}, ...}, instr).
template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

// Run with std::visit: a visitor missing a handler does not compile.
using Instr = std::variant<Forward, Backward, SendActivation, RecvActivation, SendGrad, RecvGrad, OptimizerStep>;
using Program = std::vector<Instr>;
using Schedule = std::vector<Program>;

// Forward or Backward (the instructions that take time and memory), as opposed to communication/step.
bool is_compute(const Instr& instr);
bool is_communication(const Instr& instr);
// The micro-batch and chunk of an instruction; OptimizerStep has neither and gives -1.
int microbatch_of(const Instr& instr);
int chunk_of(const Instr& instr);

// ---------------------------------------------------------------------------------------------------
// Layout arithmetic: p physical stages x v chunks. All functions expect 0 <= stage < p, 0 <= chunk < v.
// ---------------------------------------------------------------------------------------------------
struct Layout {
  int stages = 1;          // p
  int virtual_stages = 1;  // v, chunks per physical stage

  int num_virtual() const { return stages * virtual_stages; }
  int virtual_stage(int stage, int chunk) const { return chunk * stages + stage; }
  int stage_of(int vstage) const { return vstage % stages; }
  int chunk_of(int vstage) const { return vstage / stages; }
};

// ---------------------------------------------------------------------------------------------------
// Text form (as PyTorch's pipelining schedules): an optional chunk prefix, a kind, the micro-batch.
//
//   F3  B3  SEND_F3  RECV_F3  SEND_B3  RECV_B3  STEP       chunk 0
//   1F3 1B3 1SEND_F3 1RECV_F3 1SEND_B3 1RECV_B3            chunk 1
//
// SEND_F/RECV_F move activations (of forward F3), SEND_B/RECV_B move gradients (of backward B3).
// to_string prints the chunk when it is not 0, or always when `with_chunk` is true (interleaved
// schedules print "0F3" so that columns line up). Parsing accepts both.
// A program's text is its instructions separated by single spaces; a schedule's text is one line per
// stage, stage 0 first, each ending in '\n' (an empty program is an empty line).
// ---------------------------------------------------------------------------------------------------
std::string to_string(const Instr& instr, bool with_chunk = false);
std::string to_string(const Program& program, bool with_chunk = false);
std::string to_string(const Schedule& schedule, bool with_chunk = false);

// Parse one instruction / a whitespace-separated program / a schedule (one line per stage; a trailing
// newline does not add a stage). Throws troupe::Error(ErrorKind::kInput) naming the offending token,
// its line (schedules) and column (1-based), and the accepted forms.
Instr parse_instr(std::string_view token);
Program parse_program(std::string_view text);
Schedule parse_schedule(std::string_view text);

}  // namespace troupe::pipeline
