// FaultPlan: the fault.inject grammar, word by word, with errors that quote the clause.
#include "runtime/supervision/fault_plan.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::supervision {

namespace {
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
    const std::size_t b = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') ++i;
    if (i > b) out.push_back(s.substr(b, i - b));
  }
  return out;
}

template <class T>
bool number(std::string_view w, T& out) {
  const auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), out);
  return ec == std::errc() && end == w.data() + w.size() && out >= 0;
}

const char* kShape =
    "expected '<kill|throw|nan> <stage|optimizer> N at step S [micro-batch K [forward|backward]] [on replica R]', "
    "'<kill|throw> shard T [of stage P] at step S [micro-batch K [forward|backward]] [on replica R]', '<kill|stall> "
    "rank R at step S' or 'throw worker W at step S'";

FaultClause parse_clause(std::string_view text) {
  const std::vector<std::string_view> w = words(text);
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::kConfig, fmt::format("fault.inject: clause '{}': {}", text, why));
  };
  if (w.size() < 6) throw bad(fmt::format("{} words, {}", w.size(), kShape));
  FaultClause c;
  if (w[0] == "kill") c.action = FaultAction::kill;
  else if (w[0] == "throw") c.action = FaultAction::raise;
  else if (w[0] == "nan") c.action = FaultAction::nan;
  else if (w[0] == "stall") c.action = FaultAction::stall;
  else throw bad(fmt::format("unknown fault '{}'; the faults are kill, throw, nan and stall", w[0]));
  if (w[1] == "stage") c.target = FaultTarget::stage;
  else if (w[1] == "optimizer") c.target = FaultTarget::optimizer;
  else if (w[1] == "shard") c.target = FaultTarget::shard;
  else if (w[1] == "rank") c.target = FaultTarget::rank;
  else if (w[1] == "worker") c.target = FaultTarget::worker;
  else throw bad(fmt::format("unknown target '{}'; the targets are stage, optimizer, shard, rank and worker", w[1]));
  const char* what = c.target == FaultTarget::rank     ? "rank"
                     : c.target == FaultTarget::shard  ? "shard"
                     : c.target == FaultTarget::worker ? "worker"
                                                       : "stage";
  int& first = c.target == FaultTarget::shard ? c.shard : c.index;
  if (!number(w[2], first) || first > 1023) throw bad(fmt::format("'{}' is not a {} number (0 to 1023)", w[2], what));
  std::size_t at = 3;
  // Three words at `at`: `a b N`, N into `out` (checked as a `what` number); false when the words differ.
  auto phrase = [&](std::string_view a, std::string_view b, auto& out, const char* number_of, long long most) {
    if (at + 3 > w.size() || w[at] != a || w[at + 1] != b) return false;
    if (!number(w[at + 2], out) || out > most)
      throw bad(fmt::format("'{}' is not a {} number (0 to {})", w[at + 2], number_of, most == 1023 ? "1023" : "10^12"));
    at += 3;
    return true;
  };
  if (c.target == FaultTarget::shard) phrase("of", "stage", c.index, "stage", 1023);
  if (!phrase("at", "step", c.step, "step", 1000000000000LL)) throw bad(kShape);
  // A mid-step point: "micro-batch K" and, optionally, the pass it strikes before.
  if (at < w.size() && w[at] == "micro-batch") {
    if (at + 2 > w.size() || !number(w[at + 1], c.microbatch) || c.microbatch > 1023)
      throw bad(fmt::format("'{}' is not a micro-batch number (0 to 1023)", at + 1 < w.size() ? w[at + 1] : ""));
    at += 2;
    if (at < w.size() && (w[at] == "forward" || w[at] == "backward")) {
      c.pass = w[at] == "forward" ? FaultPass::forward : FaultPass::backward;
      ++at;
    }
    if ((c.action != FaultAction::kill && c.action != FaultAction::raise) ||
        (c.target != FaultTarget::stage && c.target != FaultTarget::shard))
      throw bad("a mid-step point ('micro-batch K [forward|backward]') applies to a stage or shard that is killed or "
                "throws ('kill stage 1 at step 3 micro-batch 2 backward')");
  }
  const bool on_replica = phrase("on", "replica", c.replica, "replica", 1023);
  if (at != w.size()) throw bad(kShape);
  if (c.action == FaultAction::nan && c.target != FaultTarget::stage)
    throw bad("nan applies to a stage (its gradient), not to an optimizer, a shard, a rank or a worker");
  if (c.target == FaultTarget::rank) {
    if (c.action != FaultAction::kill && c.action != FaultAction::stall)
      throw bad("a rank process can be killed or stalled ('kill rank R at step S', 'stall rank R at step S')");
    if (on_replica) throw bad("a rank is a whole replica: no 'on replica' after 'rank R'");
    c.replica = c.index;
  } else if (c.target == FaultTarget::worker) {
    if (c.action != FaultAction::raise)
      throw bad("a parameter-server worker can be made to throw ('throw worker W at step S'); 'kill rank W' and "
                "'stall rank W' hit a worker process");
    if (on_replica) throw bad("a worker is a whole data-parallel rank: no 'on replica' after 'worker W'");
    c.replica = c.index;
  } else if (c.action == FaultAction::stall) {
    throw bad("stall applies to a rank process ('stall rank R at step S'), not to an actor");
  }
  return c;
}
}  // namespace

FaultPlan parse_fault_plan(std::string_view text) {
  FaultPlan plan;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    std::size_t end = text.find(';', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view clause = text.substr(begin, end - begin);
    if (!words(clause).empty()) plan.clauses.push_back(parse_clause(clause));
    begin = end + 1;
  }
  return plan;
}

namespace {
// " micro-batch K forward" for a mid-step clause, "" for one at the step's start.
std::string point_of(const FaultClause& c) {
  if (c.microbatch < 0) return {};
  return fmt::format(" micro-batch {} {}", c.microbatch, c.pass == FaultPass::forward ? "forward" : "backward");
}
}  // namespace

std::string to_string(const FaultClause& c) {
  const char* action = c.action == FaultAction::kill    ? "kill"
                       : c.action == FaultAction::raise ? "throw"
                       : c.action == FaultAction::nan   ? "nan"
                                                        : "stall";
  if (c.target == FaultTarget::rank) return fmt::format("{} rank {} at step {}", action, c.index, c.step);
  if (c.target == FaultTarget::worker) return fmt::format("{} worker {} at step {}", action, c.index, c.step);
  const std::string replica = c.replica == 0 ? std::string() : fmt::format(" on replica {}", c.replica);
  if (c.target == FaultTarget::shard)
    return fmt::format("{} shard {}{} at step {}{}{}", action, c.shard,
                       c.index == 0 ? std::string() : fmt::format(" of stage {}", c.index), c.step, point_of(c), replica);
  return fmt::format("{} {} {} at step {}{}{}", action, c.target == FaultTarget::stage ? "stage" : "optimizer", c.index,
                     c.step, point_of(c), replica);
}

std::string to_string(const FaultPlan& plan) {
  std::string out;
  for (const FaultClause& c : plan.clauses) out += (out.empty() ? "" : "; ") + to_string(c);
  return out;
}

bool take_clause(std::vector<FaultClause>& pending, int index, std::int64_t step) {
  const auto it = std::find_if(pending.begin(), pending.end(),
                               [&](const FaultClause& c) { return c.index == index && c.step == step; });
  if (it == pending.end()) return false;
  pending.erase(it);
  return true;
}

}  // namespace troupe::supervision
