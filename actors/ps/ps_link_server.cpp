// PsLinkServer: rank 0's per-worker serving threads, their loss reports, and the restarts of dead workers.
#include "actors/ps/ps_link_server.h"

#include <cstdio>

#include <fmt/format.h>

#include "actors/ps/ps_link.h"
#include "runtime/error.h"

namespace troupe::ps {

PsLinkServer::PsLinkServer(PsCluster& cluster, const PsLayout& layout, PsLinks& links, bool opened)
    : cluster_(cluster), layout_(layout), links_(links), workers_(static_cast<int>(links.links.size()) + 1),
      opened_(opened) {
  TROUPE_CHECK(links.rank == 0, "the ps link server runs on rank 0, not rank ", links.rank);
  done_.assign(static_cast<std::size_t>(workers_), false);
  pushed_upto_.assign(static_cast<std::size_t>(workers_), 0);
  for (int w = 1; w < workers_; ++w) threads_.emplace_back([this, w] { serve(w); });
}

PsLinkServer::~PsLinkServer() { finish(finished_); }

void PsLinkServer::open(std::int64_t first_step) {
  std::lock_guard lock(mu_);
  TROUPE_CHECK(!opened_, "ps link server opened twice");
  pushed_upto_.assign(static_cast<std::size_t>(workers_), first_step);
  opened_ = true;
  cv_.notify_all();
}

void PsLinkServer::finish(bool ok) {
  {
    std::lock_guard lock(mu_);
    closing_ = true;  // no more restarts, and a hello waiting for open() gives up
    cv_.notify_all();
  }
  // A run that ends early (an error, a stop signal): a serving thread may wait in a shard for a step that
  // will not come (sync: the next step's pull); stopping the shards ends that wait now, not at the timeout.
  if (!ok && !threads_.empty()) cluster_.abort();
  if (!ok && links_.abort && !threads_.empty()) links_.abort();
  finished_ = ok;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void PsLinkServer::serve(int w) {
  std::unique_ptr<PsClient> client = cluster_.client(w);
  PsServeHooks hooks;
  hooks.on_report = [this, w](std::int64_t step, std::vector<double> losses) {
    std::lock_guard lock(mu_);
    reports_[{w, step}] = std::move(losses);  // a restarted worker's repeat of a step reports the same
    cv_.notify_all();
  };
  hooks.on_pushed = [this, w](std::int64_t step) {
    std::lock_guard lock(mu_);
    pushed_upto_[static_cast<std::size_t>(w)] = step + 1;
    if (auto it = recovering_.find(w); it != recovering_.end() && it->second.second == step) {
      supervision::Restart& r = log_[it->second.first];
      r.recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() - r.at_s;
      recovering_.erase(it);
    }
  };
  hooks.resume_step = [this, w] {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return opened_ || closing_; });
    return pushed_upto_[static_cast<std::size_t>(w)];
  };
  while (true) {
    try {
      serve_remote_worker(*links_.links[static_cast<std::size_t>(w - 1)], w, layout_, *client, hooks);
      break;  // it said goodbye
    } catch (const std::exception& e) {
      const double died = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      const std::string why = fmt::format("ps worker {} (process rank {}; rank 1 of its link to this process): {}", w, w, e.what());
      bool restart = false;
      int attempt = 0;
      {
        std::lock_guard lock(mu_);
        // Not when the run is ending anyway (another worker failed and the shards are stopped).
        restart = links_.restart && restarts_ < links_.max_restarts && failure_.empty() && !closing_;
        if (restart) attempt = ++restarts_;
      }
      if (restart) {
        // The transport's advice ("restart the group without ...") is what happens next: say that instead.
        std::string said = why;
        if (const auto at = said.find("; restart the group without"); at != std::string::npos) {
          const auto reason = said.find(" (", at);
          said.erase(at, reason == std::string::npos ? std::string::npos : reason - at);
        }
        std::fprintf(stderr, "troupe: %s\ntroupe: restarting ps worker %d (restart %d of at most %d); it resumes at step %lld\n",
                     said.c_str(), w, attempt, links_.max_restarts, static_cast<long long>(hooks.resume_step()));
        try {
          links_.links[static_cast<std::size_t>(w - 1)] = links_.restart(w);
          std::lock_guard lock(mu_);
          const auto named = said.find("): ");  // the worker's name is the restart's child
          const std::string cause = named == std::string::npos ? said : said.substr(named + 3);
          supervision::Restart r{fmt::format("ps worker {}", w), hooks_resume_step_locked(w),
                                 cause.substr(0, cause.find('\n')), died};
          r.restarted_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() - died;
          recovering_[w] = {log_.size(), r.step};
          log_.push_back(std::move(r));
          continue;
        } catch (const std::exception& again) {
          std::lock_guard lock(mu_);
          if (failure_.empty()) failure_ = fmt::format("{}; restarting it failed: {}", why, again.what());
        }
      } else {
        std::lock_guard lock(mu_);
        if (failure_.empty()) failure_ = why;
      }
      // Worker 0 and the other workers may wait on the shards for this worker's push: stop them now.
      cluster_.abort();
      break;
    }
  }
  client.reset();
  std::lock_guard lock(mu_);
  done_[static_cast<std::size_t>(w)] = true;
  cv_.notify_all();
}

std::vector<std::vector<double>> PsLinkServer::wait_for_reports(std::int64_t step) {
  std::vector<std::vector<double>> out;
  std::unique_lock lock(mu_);
  for (int w = 1; w < workers_; ++w) {
    cv_.wait(lock, [&] { return reports_.count({w, step}) || !failure_.empty() || done_[static_cast<std::size_t>(w)]; });
    auto it = reports_.find({w, step});  // a report that arrived counts, even if the link broke after it
    if (it == reports_.end() && !failure_.empty()) throw Error(ErrorKind::kIo, failure_);
    if (it == reports_.end())
      throw Error(ErrorKind::kIo, fmt::format("ps worker {} said goodbye before reporting step {}", w, step));
    out.push_back(std::move(it->second));
    reports_.erase(it);
  }
  return out;
}

void PsLinkServer::throw_if_failed() const {
  std::lock_guard lock(mu_);
  if (!failure_.empty()) throw Error(ErrorKind::kIo, failure_);
}

std::int64_t PsLinkServer::hooks_resume_step_locked(int w) const { return pushed_upto_[static_cast<std::size_t>(w)]; }

std::vector<supervision::Restart> PsLinkServer::restart_log() const {
  std::lock_guard lock(mu_);
  return log_;
}

bool PsLinkServer::failed() const {
  std::lock_guard lock(mu_);
  return !failure_.empty();
}

int PsLinkServer::restarts() const {
  std::lock_guard lock(mu_);
  return restarts_;
}

}  // namespace troupe::ps
