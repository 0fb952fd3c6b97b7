// ProcessRecovery: rank 0's restarts of dead rank processes, the re-formed groups, and the agreement on the
// step to re-run with the state moved to whoever needs it.
#include "actors/process_recovery.h"

#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "runtime/checkpoint/state_bytes.h"
#include "runtime/comm/compression/compression_spec.h"
#include "runtime/error.h"
#include "runtime/process/rank_reports.h"
#include "runtime/process/replica_processes.h"

namespace troupe {

namespace {
// Tags of the agreement on stage 0's new group, before any collective uses it.
constexpr std::uint32_t kBoundaryTag = 0x7e570001u;  // rank r -> 0: {boundary}
constexpr std::uint32_t kVerdictTag = 0x7e570002u;   // 0 -> r: {step, bytes of state that follow (0: none)}
constexpr std::uint32_t kStateTag = 0x7e570003u;     // 0 -> r: the state (state_bytes.h)
constexpr std::uint32_t kDoneTag = 0x7e570004u;      // r -> 0 after the last step
constexpr std::uint32_t kEndTag = 0x7e570005u;       // 0 -> r: every rank is done

// Past the restart intensity: the job stops (not a failure to form the group that another attempt heals).
struct Escalation : Error {
  explicit Escalation(const std::string& what) : Error(ErrorKind::kIo, what) {}
};

template <class T>
std::span<const std::byte> bytes_of(const T& v) {
  return std::as_bytes(std::span<const T>(&v, 1));
}
template <class T>
std::span<std::byte> bytes_of(T& v) {
  return std::as_writable_bytes(std::span<T>(&v, 1));
}
}  // namespace

std::string process_restart_refusal(const RunConfig& config, bool launcher_started) {
  if (config.fault.max_restarts == 0) return "fault.max_restarts = 0";
  if (config.comm.transport != TransportKind::tcp) return "comm.transport = shm (only tcp groups re-form yet)";
  if (launcher_started) return "ranks a launcher started (rank 0 cannot start them again)";
  if (config.parallel.zero) return "ZeRO-1 (a dead replica's optimizer shard lives nowhere else)";
  if (config.comm.compression.kind != comm::CompressionKind::kNone)
    return "comm.compression (a dead replica's error-feedback residuals live nowhere else)";
  if (config.model.sync_batchnorm) return "model.sync_batchnorm (its statistics groups do not re-form yet)";
  return {};
}

ProcessRecovery::ProcessRecovery(const RunConfig& config, int rank, Connect connect, ReplicaProcesses* processes)
    : config_(config),
      rank_(rank),
      connect_(std::move(connect)),
      processes_(processes),
      intensity_(config.fault.max_restarts, config.fault.restart_window_s) {}

double ProcessRecovery::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - born_).count();
}

void ProcessRecovery::restart_dead(std::int64_t step) {
  for (const ReplicaProcesses::Ended& e : processes_->exited()) {
    const std::string child = fmt::format("data-parallel rank {}", e.rank);
    const std::string cause = fmt::format("its process {} {}", static_cast<int>(e.pid), e.how);
    collect_forwarded();  // it reported its escalation before it ended
    if (const auto escalated = forwarded_.escalation_of(static_cast<long>(e.pid)))
      throw Escalation(fmt::format("in the process of data-parallel rank {} (process {}, started by rank 0), {}",
                                   e.rank, static_cast<int>(e.pid), escalated->escalation));
    if (!intensity_.allow(child, step, cause, now_s())) {
      const std::string place =
          fmt::format("the replica process of data-parallel rank {} (replica {} of parallel.data = {}, every pipeline "
                      "stage of it; process {} on this host, started by rank 0)",
                      e.rank, e.rank, config_.parallel.data, e.rank);
      throw Escalation(intensity_.escalation(place, step, cause, config_.train.checkpoint_dir));
    }
    ++restarted_;
    processes_->restart(e.rank, {{kRejoinEnv, "1"}});
    std::fprintf(stderr,
                 "troupe: data-parallel rank %d: %s in step %lld; rank 0 restarted it as process %d (restart %d of at "
                 "most %d within %g s); it takes its state from rank 0 and every rank re-runs step %lld\n",
                 e.rank, cause.c_str(), static_cast<long long>(step), static_cast<int>(processes_->pid_of(e.rank)),
                 intensity_.recent(now_s()), intensity_.max_restarts(), intensity_.window_s(),
                 static_cast<long long>(step));
  }
}

ReformedGroups ProcessRecovery::reform(std::int64_t boundary, std::int64_t step,
                                       const std::function<TrainingState()>& gather, const std::string& cause) {
  const int restarted_at_start = restarted_;
  // A rank that dies while the group forms makes the attempt fail at some rank: every process tries
  // again (rank 0 restarts the dead one meanwhile), as often as the restart intensity allows it to die.
  std::string last;
  for (int attempt = 0; attempt <= config_.fault.max_restarts + 1; ++attempt) {
    const int restarted_before = restarted_;
    try {
      std::function<void()> while_waiting;
      if (processes_) {
        restart_dead(step);
        while_waiting = [this, step] { restart_dead(step); };
      }
      ReformedGroups groups = connect_(while_waiting);
      TROUPE_CHECK(!groups.transports.empty(), "no group to agree on");
      if (processes_ && restarted_ == restarted_at_start && !cause.empty() && !explained(step)) {  // the group's own
        const std::string why = cause.substr(0, cause.find('\n'));
        if (!intensity_.allow("data-parallel group", step, why, now_s()))
          throw Escalation(intensity_.escalation(
              fmt::format("the data-parallel group of {} rank processes (every rank lived; the group re-forms when a "
                          "collective fails or an actor of a rank dies)",
                          config_.parallel.data),
              step, why, config_.train.checkpoint_dir));
      }
      groups.agreed = agree(*groups.transports.front(), boundary, gather);
      return groups;
    } catch (const Escalation&) {
      throw;
    } catch (const Error& e) {
      last = e.what();
      // Rank 0 tries again only when a rank died meanwhile (and was restarted): anything else would fail again.
      if (processes_) {
        restart_dead(step);  // one that died just now explains the failure too
        if (restarted_ == restarted_before) throw;
      }
    }
  }
  throw Error(ErrorKind::kIo, "data-parallel rank " + std::to_string(rank_) + ": the group did not form again: " + last);
}

Agreement ProcessRecovery::agree(comm::Transport& t, std::int64_t boundary, const std::function<TrainingState()>& gather) {
  Agreement agreed;
  if (rank_ == 0) {
    std::vector<std::int64_t> boundaries(static_cast<std::size_t>(t.size()), boundary);
    for (int r = 1; r < t.size(); ++r) t.recv(r, kBoundaryTag, bytes_of(boundaries[static_cast<std::size_t>(r)]));
    std::vector<std::byte> state;
    for (int r = 1; r < t.size(); ++r) {
      const bool needs = boundaries[static_cast<std::size_t>(r)] != boundary;
      if (needs && state.empty()) state = state_to_bytes(gather());
      const std::int64_t verdict[2] = {boundary, needs ? static_cast<std::int64_t>(state.size()) : 0};
      t.send(r, kVerdictTag, std::as_bytes(std::span(verdict)));
      if (needs) t.send(r, kStateTag, state);
    }
    agreed.step = boundary;
    return agreed;
  }
  t.send(0, kBoundaryTag, bytes_of(boundary));
  std::int64_t verdict[2] = {0, 0};
  t.recv(0, kVerdictTag, std::as_writable_bytes(std::span(verdict)));
  agreed.step = verdict[0];
  if (verdict[1] > 0) {
    std::vector<std::byte> state(static_cast<std::size_t>(verdict[1]));
    t.recv(0, kStateTag, state);
    agreed.state = state_from_bytes(state, "rank 0");
  }
  return agreed;
}

void ProcessRecovery::barrier(comm::Transport& t) {
  std::byte word{1};
  const auto bytes = std::span(&word, 1);
  if (rank_ == 0) {
    for (int r = 1; r < t.size(); ++r) t.recv(r, kDoneTag, bytes);
    for (int r = 1; r < t.size(); ++r) t.send(r, kEndTag, bytes);
    return;
  }
  t.send(0, kDoneTag, bytes);
  t.recv(0, kEndTag, bytes);
}

void ProcessRecovery::rerun_ordered() { intensity_.rerun(now_s()); }

void ProcessRecovery::step_done() {
  intensity_.recovered(now_s());
  collect_forwarded();
}

void ProcessRecovery::collect_forwarded() {
  if (!processes_) return;
  for (const ReplicaProcesses::Report& r : processes_->take_reports()) {
    if (const auto f = supervision::decode_forwarded_restart(r.text); f && f->rank == r.rank)
      forwarded_.add(static_cast<long>(r.pid), *f);
    else if (const auto e = supervision::decode_forwarded_escalation(r.text); e && e->rank == r.rank)
      forwarded_.add_escalation(static_cast<long>(r.pid), *e);
  }
}

bool ProcessRecovery::explained(std::int64_t step) {
  // The rank wrote its report before it broke the group, so it is in its pipe by now.
  collect_forwarded();
  return forwarded_.explains_reform(step);
}

std::vector<supervision::Restart> ProcessRecovery::restarts() const {
  std::vector<supervision::Restart> all = intensity_.restarts();
  for (supervision::Restart& r : forwarded_.restarts()) all.push_back(std::move(r));
  return all;
}

supervision::RestartIntensity::EscalationObserver ProcessRecovery::escalation_forwarder(int rank) {
  if (!has_rank_zero()) return {};
  return [rank](const std::string& escalation) {
    report_to_rank_zero(supervision::encode_forwarded_escalation({rank, escalation}));
  };
}

supervision::RestartIntensity::Observer ProcessRecovery::restart_forwarder(int rank) {
  if (!has_rank_zero()) return {};
  return [rank](std::size_t index, const supervision::Restart& r) {
    report_to_rank_zero(supervision::encode_forwarded_restart({rank, index, r}));
  };
}

}  // namespace troupe
