// Owns the dry-run simulator: lock-step execution with unbounded mailboxes, send/receive pairing, deadlock and dependency checks, statistics.
#include "runtime/schedule/simulator.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <type_traits>
#include <utility>

#include "runtime/error.h"
#include "runtime/schedule/grid.h"

namespace troupe::pipeline {

namespace {


// A message is identified by what it carries, where it goes and for which micro-batch.
struct MsgKey {
  bool grad = false;  // false: activation (k -> k+1); true: gradient (k -> k-1)
  int dest = 0;       // destination virtual stage
  int mb = 0;
  auto operator<=>(const MsgKey&) const = default;
};

struct Message {
  int dest_stage = 0;
  long available = 0;  // when its send ended
  long consumed = -1;  // when its receive started; -1 while in the mailbox
};

using Chunked = std::pair<int, int>;  // (micro-batch, chunk)

struct StageState {
  std::set<Chunked> forwarded, backwarded, got_activation, got_grad;
  int in_flight = 0;
  long clock = 0;  // when the stage is free again
};

std::string where(int stage, std::size_t index, const Instr& instr, bool with_chunk) {
  return "stage " + std::to_string(stage) + " instruction " + std::to_string(index) + " (" +
         to_string(instr, with_chunk) + ")";
}

class Simulator {
 public:
  Simulator(const Schedule& schedule, int p, int v, const Costs& costs)
      : layout_{p, v}, costs_(costs), with_chunk_(v > 1) {
    result_.layout = layout_;
    result_.schedule = schedule;
    result_.slots.resize(static_cast<std::size_t>(p));
    result_.stages.resize(static_cast<std::size_t>(p));
    states_.resize(static_cast<std::size_t>(p));
  }

  SimResult run() {
    check_matching();
    execute();
    finish_stats();
    return std::move(result_);
  }

 private:
  const Program& program(int s) const { return result_.schedule[static_cast<std::size_t>(s)]; }
  int vstage(int s, const Instr& instr) const { return layout_.virtual_stage(s, chunk_of(instr)); }
  int last() const { return layout_.num_virtual() - 1; }

  // The message a send produces or a receive consumes; false when no such neighbour exists.
  bool key_of(int s, const Instr& instr, MsgKey& key) const {
    const int k = vstage(s, instr), mb = microbatch_of(instr);
    if (std::holds_alternative<SendActivation>(instr)) key = {false, k + 1, mb};
    else if (std::holds_alternative<RecvActivation>(instr)) key = {false, k, mb};
    else if (std::holds_alternative<SendGrad>(instr)) key = {true, k - 1, mb};
    else if (std::holds_alternative<RecvGrad>(instr)) key = {true, k, mb};
    else return false;
    return key.dest >= 0 && key.dest <= last() && (key.grad ? key.dest + 1 : key.dest - 1) >= 0 &&
           (key.grad ? key.dest + 1 : key.dest - 1) <= last();
  }

  static bool is_send(const Instr& instr) {
    return std::holds_alternative<SendActivation>(instr) || std::holds_alternative<SendGrad>(instr);
  }

  // The instruction text at the other end of `key`, printed as the peer's program would hold it.
  std::string peer_text(const MsgKey& key, bool want_send) const {
    const int src = key.grad ? key.dest + 1 : key.dest - 1;
    const int at = want_send ? src : key.dest;
    const int chunk = layout_.chunk_of(at);
    Instr peer = want_send ? (key.grad ? Instr{SendGrad{key.mb, chunk}} : Instr{SendActivation{key.mb, chunk}})
                           : (key.grad ? Instr{RecvGrad{key.mb, chunk}} : Instr{RecvActivation{key.mb, chunk}});
    return to_string(peer, with_chunk_) + " on stage " + std::to_string(layout_.stage_of(at)) + " (virtual stage " +
           std::to_string(at) + ")";
  }

  void flag(int s, std::size_t i) {
    InstrRef ref{s, i};
    if (std::find(result_.flagged.begin(), result_.flagged.end(), ref) == result_.flagged.end())
      result_.flagged.push_back(ref);
  }

  // Pairs sends with receives over the whole schedule, independent of execution order.
  void check_matching() {
    std::map<MsgKey, std::pair<std::vector<InstrRef>, std::vector<InstrRef>>> uses;  // sends, receives
    for (int s = 0; s < layout_.stages; ++s) {
      for (std::size_t i = 0; i < program(s).size(); ++i) {
        const Instr& instr = program(s)[i];
        if (!is_communication(instr)) continue;
        MsgKey key;
        if (!key_of(s, instr, key)) {
          result_.unmatched.push_back(where(s, i, instr, with_chunk_) + (is_send(instr) ? " sends to" : " receives from") +
                                      " a virtual stage that does not exist (virtual stages are 0.." +
                                      std::to_string(last()) + ")");
          flag(s, i);
          continue;
        }
        (is_send(instr) ? uses[key].first : uses[key].second).push_back({s, i});
      }
    }
    for (const auto& [key, refs] : uses) {
      const auto& [sends, recvs] = refs;
      if (sends.size() == recvs.size() && sends.size() == 1) continue;
      if (recvs.empty()) {
        for (const InstrRef& r : sends) {
          result_.unmatched.push_back(where(r.stage, r.index, program(r.stage)[r.index], with_chunk_) +
                                      " has no matching " + peer_text(key, false));
          flag(r.stage, r.index);
        }
      } else if (sends.empty()) {
        for (const InstrRef& r : recvs) {
          result_.unmatched.push_back(where(r.stage, r.index, program(r.stage)[r.index], with_chunk_) +
                                      " has no matching " + peer_text(key, true));
          flag(r.stage, r.index);
        }
      } else {
        result_.unmatched.push_back(peer_text(key, true) + " runs " + std::to_string(sends.size()) + " time(s) but " +
                                    peer_text(key, false) + " runs " + std::to_string(recvs.size()) +
                                    " time(s); each must run exactly once");
        for (const InstrRef& r : sends) flag(r.stage, r.index);
        for (const InstrRef& r : recvs) flag(r.stage, r.index);
      }
    }
  }

  void violation(int s, std::size_t i, const std::string& what) {
    result_.violations.push_back(where(s, i, program(s)[i], with_chunk_) + " " + what);
    flag(s, i);
  }

  // Finds a delivered message for `key` available by time t; -1 if none.
  long take_message(const MsgKey& key, long t) {
    auto it = mailbox_.find(key);
    if (it == mailbox_.end()) return -1;
    for (std::size_t& id : it->second) {
      if (id == kTaken || messages_[id].available > t) continue;
      std::size_t found = id;
      id = kTaken;
      return static_cast<long>(found);
    }
    return -1;
  }

  // Tries to run stage s's next instruction at time t; false when it must wait for a message.
  bool step(int s, long t) {
    const std::size_t i = result_.slots[static_cast<std::size_t>(s)].size();
    const Instr& instr = program(s)[i];
    StageState& st = states_[static_cast<std::size_t>(s)];
    const int mb = microbatch_of(instr), chunk = chunk_of(instr);
    const int k = chunk >= 0 ? layout_.virtual_stage(s, chunk) : 0;
    const Chunked self{mb, chunk};
    long cost = 0;
    const bool prev_local = k > 0 && layout_.stage_of(k - 1) == s;
    const bool next_local = k < last() && layout_.stage_of(k + 1) == s;

    const bool ran = std::visit(
        Overloaded{
            [&](const Forward&) {
              if (k > 0 && !prev_local && !st.got_activation.count(self))
                violation(s, i, "runs without its input: no " +
                                    to_string(Instr{RecvActivation{mb, chunk}}, with_chunk_) + " before it");
              if (prev_local && !st.forwarded.count({mb, layout_.chunk_of(k - 1)}))
                violation(s, i, "runs before the forward of virtual stage " + std::to_string(k - 1) +
                                    " on the same stage");
              if (!st.forwarded.insert(self).second) violation(s, i, "runs a second time");
              else st.in_flight++;
              auto& stats = result_.stages[static_cast<std::size_t>(s)];
              stats.peak_in_flight = std::max(stats.peak_in_flight, st.in_flight);
              cost = costs_.forward;
              stats.busy += cost;
              return true;
            },
            [&](const Backward&) {
              if (!st.forwarded.count(self))
                violation(s, i, "runs before the forward of the same micro-batch and chunk");
              if (k < last() && !next_local && !st.got_grad.count(self))
                violation(s, i, "runs without its gradient: no " + to_string(Instr{RecvGrad{mb, chunk}}, with_chunk_) +
                                    " before it");
              if (next_local && !st.backwarded.count({mb, layout_.chunk_of(k + 1)}))
                violation(s, i, "runs before the backward of virtual stage " + std::to_string(k + 1) +
                                    " on the same stage");
              if (!st.backwarded.insert(self).second) violation(s, i, "runs a second time");
              else if (st.forwarded.count(self)) st.in_flight--;
              cost = costs_.backward;
              result_.stages[static_cast<std::size_t>(s)].busy += cost;
              return true;
            },
            [&](const OptimizerStep&) {
              if (st.in_flight > 0)
                violation(s, i, "runs while " + std::to_string(st.in_flight) +
                                    " micro-batch activation(s) still wait for their backward");
              cost = costs_.optimizer_step;
              return true;
            },
            [&](const auto& comm) {
              using T = std::decay_t<decltype(comm)>;
              constexpr bool kSend = std::is_same_v<T, SendActivation> || std::is_same_v<T, SendGrad>;
              MsgKey key;
              const bool valid = key_of(s, instr, key);  // invalid ones are reported as unmatched
              if constexpr (kSend) {
                constexpr bool kGrad = std::is_same_v<T, SendGrad>;
                if (!(kGrad ? st.backwarded : st.forwarded).count(self))
                  violation(s, i, std::string("sends before the ") + (kGrad ? "backward" : "forward") +
                                      " that produces it");
                cost = costs_.send;
                if (valid) {
                  mailbox_[key].push_back(messages_.size());
                  messages_.push_back({layout_.stage_of(key.dest), t + cost, -1});
                  if (cost > 0) arrivals_.insert(t + cost);
                }
                return true;
              } else {
                if (!valid) return false;  // can never be satisfied: a deadlock, reported as such
                const long id = take_message(key, t);
                if (id < 0) return false;
                messages_[static_cast<std::size_t>(id)].consumed = t;
                (std::is_same_v<T, RecvGrad> ? st.got_grad : st.got_activation).insert(self);
                cost = costs_.recv;
                return true;
              }
            },
        },
        instr);
    if (!ran) return false;
    result_.slots[static_cast<std::size_t>(s)].push_back({t, t + cost});
    st.clock = t + cost;
    return true;
  }

  bool finished(int s) const { return result_.slots[static_cast<std::size_t>(s)].size() == program(s).size(); }

  void execute() {
    long t = 0;
    for (;;) {
      // Run everything that can run at time t; zero-cost instructions can enable others at the same t.
      for (bool progress = true; progress;) {
        progress = false;
        for (int s = 0; s < layout_.stages; ++s)
          while (!finished(s) && states_[static_cast<std::size_t>(s)].clock <= t && step(s, t)) progress = true;
      }
      bool all_done = true;
      long next = std::numeric_limits<long>::max();
      for (int s = 0; s < layout_.stages; ++s) {
        if (finished(s)) continue;
        all_done = false;
        if (states_[static_cast<std::size_t>(s)].clock > t) next = std::min(next, states_[static_cast<std::size_t>(s)].clock);
      }
      if (all_done) return;
      // Messages still in flight (sent with a cost) also wake stages up.
      arrivals_.erase(arrivals_.begin(), arrivals_.upper_bound(t));
      if (!arrivals_.empty()) next = std::min(next, *arrivals_.begin());
      if (next == std::numeric_limits<long>::max()) {
        report_deadlock(t);
        return;
      }
      t = next;
    }
  }

  void report_deadlock(long t) {
    result_.deadlock = true;
    result_.deadlock_time = t;
    for (int s = 0; s < layout_.stages; ++s) {
      if (finished(s)) continue;
      const std::size_t i = result_.next(s);
      flag(s, i);
    }
  }

  void finish_stats() {
    long makespan = 0, busy = 0;
    for (int s = 0; s < layout_.stages; ++s) {
      auto& stats = result_.stages[static_cast<std::size_t>(s)];
      for (const Slot& slot : result_.slots[static_cast<std::size_t>(s)]) stats.finish = std::max(stats.finish, slot.end);
      makespan = std::max(makespan, stats.finish);
      busy += stats.busy;
    }
    // Mailbox occupancy: a message occupies its destination's mailbox during [available, consumed)
    // (forever if never received). Sweep the arrivals and departures, departures first at equal times.
    std::vector<std::vector<std::pair<long, int>>> events(static_cast<std::size_t>(layout_.stages));
    for (const Message& msg : messages_) {
      if (msg.consumed == msg.available) continue;  // received the moment it arrived
      auto& ev = events[static_cast<std::size_t>(msg.dest_stage)];
      ev.emplace_back(msg.available, +1);
      if (msg.consumed >= 0) ev.emplace_back(msg.consumed, -1);
    }
    for (int s = 0; s < layout_.stages; ++s) {
      auto& ev = events[static_cast<std::size_t>(s)];
      std::sort(ev.begin(), ev.end());
      int held = 0;
      for (const auto& [time, delta] : ev) {
        held += delta;
        auto& stats = result_.stages[static_cast<std::size_t>(s)];
        stats.peak_mailbox = std::max(stats.peak_mailbox, held);
      }
    }
    result_.makespan = makespan;
    result_.bubble = makespan > 0 ? 1.0 - static_cast<double>(busy) / (static_cast<double>(layout_.stages) * makespan) : 0.0;
  }

  static constexpr std::size_t kTaken = std::numeric_limits<std::size_t>::max();
  Layout layout_;
  Costs costs_;
  bool with_chunk_;
  SimResult result_;
  std::vector<StageState> states_;
  std::vector<Message> messages_;
  std::map<MsgKey, std::vector<std::size_t>> mailbox_;
  std::multiset<long> arrivals_;  // when messages sent with a cost become available
};

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * x);
  return buf;
}

}  // namespace

SimResult simulate(const Schedule& schedule, int p, int v, const Costs& costs) {
  if (p < 1 || v < 1)
    throw Error(ErrorKind::kInput, "simulate: stages and virtual stages must be >= 1, got " + std::to_string(p) +
                                       " and " + std::to_string(v));
  if (schedule.size() != static_cast<std::size_t>(p))
    throw Error(ErrorKind::kInput, "simulate: schedule has " + std::to_string(schedule.size()) +
                                       " stage programs but the pipeline has " + std::to_string(p) + " stages");
  if (costs.forward < 0 || costs.backward < 0 || costs.optimizer_step < 0 || costs.send < 0 || costs.recv < 0)
    throw Error(ErrorKind::kInput, "simulate: instruction costs must be >= 0");
  for (int s = 0; s < p; ++s) {
    const Program& program = schedule[static_cast<std::size_t>(s)];
    for (std::size_t i = 0; i < program.size(); ++i) {
      const Instr& instr = program[i];
      if (std::holds_alternative<OptimizerStep>(instr)) continue;
      if (chunk_of(instr) < 0 || chunk_of(instr) >= v)
        throw Error(ErrorKind::kInput, "simulate: " + where(s, i, instr, true) + " names chunk " +
                                           std::to_string(chunk_of(instr)) + " but chunks are 0.." +
                                           std::to_string(v - 1));
      if (microbatch_of(instr) < 0)
        throw Error(ErrorKind::kInput, "simulate: " + where(s, i, instr, true) + " has a negative micro-batch");
    }
  }
  return Simulator(schedule, p, v, costs).run();
}

std::string SimResult::report() const {
  const bool with_chunk = layout.virtual_stages > 1;
  std::string out = "pipeline simulation, " + std::to_string(layout.stages) + " stage(s) x " +
                    std::to_string(layout.virtual_stages) + " chunk(s): " + (ok() ? "ok" : "FAILED") +
                    ", makespan " + std::to_string(makespan) + ", bubble " + percent(bubble) + "\n";
  for (std::size_t s = 0; s < stages.size(); ++s) {
    const StageStats& st = stages[s];
    out += "  stage " + std::to_string(s) + ": busy " + std::to_string(st.busy) + ", peak in-flight activations " +
           std::to_string(st.peak_in_flight) + ", peak mailbox " + std::to_string(st.peak_mailbox) +
           ", finished at " + std::to_string(st.finish) + "\n";
  }
  if (deadlock) {
    out += "deadlock at time " + std::to_string(deadlock_time) + ": no stage can progress\n";
    for (int s = 0; s < layout.stages; ++s) {
      const Program& program = schedule[static_cast<std::size_t>(s)];
      const std::size_t i = next(s);
      if (i >= program.size()) continue;
      out += "  " + where(s, i, program[i], with_chunk) + " waits";
      // Name the send it waits for and where that send sits, if anywhere.
      const Instr& instr = program[i];
      const int k = layout.virtual_stage(s, chunk_of(instr));
      const bool grad = std::holds_alternative<RecvGrad>(instr);
      const int src = grad ? k + 1 : k - 1;
      if (src < 0 || src >= layout.num_virtual()) {
        out += " for a virtual stage that does not exist\n";
        continue;
      }
      const int peer = layout.stage_of(src), pchunk = layout.chunk_of(src);
      const Instr want = grad ? Instr{SendGrad{microbatch_of(instr), pchunk}}
                              : Instr{SendActivation{microbatch_of(instr), pchunk}};
      out += " for " + to_string(want, with_chunk) + " on stage " + std::to_string(peer);
      const Program& peer_program = schedule[static_cast<std::size_t>(peer)];
      auto at = std::find(peer_program.begin(), peer_program.end(), want);
      if (at == peer_program.end()) {
        out += ", which stage " + std::to_string(peer) + " never runs\n";
      } else {
        const std::size_t j = static_cast<std::size_t>(at - peer_program.begin());
        out += ", its instruction " + std::to_string(j) + ", not reached";
        const std::size_t pn = next(peer);
        if (pn < peer_program.size())
          out += " (stage " + std::to_string(peer) + " is blocked at instruction " + std::to_string(pn) + ", " +
                 to_string(peer_program[pn], with_chunk) + ")";
        out += "\n";
      }
    }
  }
  if (!unmatched.empty()) {
    out += "unmatched communication:\n";
    for (const std::string& u : unmatched) out += "  " + u + "\n";
  }
  if (!violations.empty()) {
    out += "dependency violations:\n";
    for (const std::string& u : violations) out += "  " + u + "\n";
  }
  if (!ok()) {
    GridOptions options;
    options.show_communication = true;
    options.marks = flagged;
    out += render_grid(*this, options);
  }
  return out;
}

}  // namespace troupe::pipeline
