// Owns the in-process transport's mailboxes, its timeouts and its kill() broadcast.
#include "net/inproc/inproc_transport.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/comm/group_aborted.h"
#include "runtime/error.h"

namespace troupe::net {

namespace {

struct Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<std::byte>> messages;
};

using MailboxKey = std::tuple<int, int, std::uint32_t>;  // (from, to, tag)

}  // namespace

struct InprocWorld::State {
  State(int n, std::chrono::milliseconds t) : ranks(n), timeout(t), dead(static_cast<std::size_t>(n)) {}

  const int ranks;
  const std::chrono::milliseconds timeout;

  // Guards the map only; each mailbox's queue has its own mutex. Lock order: mu, then a mailbox's mu.
  std::mutex mu;
  std::map<MailboxKey, std::unique_ptr<Mailbox>> mailboxes;

  // first_dead is set (once) before any waiter is woken, and read under the mailbox mutex by
  // waiters, so a recv that starts waiting after kill() still sees it: no lost wake-up.
  std::vector<std::atomic<bool>> dead;
  std::atomic<int> first_dead{-1};
  std::atomic<bool> aborted{false};  // abort() until reform(); read like first_dead

  Mailbox& mailbox(int from, int to, std::uint32_t tag) {
    std::lock_guard lock(mu);
    auto& slot = mailboxes[MailboxKey{from, to, tag}];
    if (!slot) slot = std::make_unique<Mailbox>();
    return *slot;  // stable: mailboxes are never erased while the state lives
  }

  // Throws when the world is broken; names `peer` if it is the dead one, else the first dead rank.
  void throw_if_broken(int self, int peer, const char* op) const {
    const int first = first_dead.load();
    if (first < 0 && aborted.load())
      throw comm::GroupAborted(detail::concat("rank ", self, ": ", op, " with rank ", peer,
                                              " abandoned: the step is re-run on every rank"));
    if (first < 0) return;
    const int culprit = dead[static_cast<std::size_t>(peer)].load() ? peer : first;
    throw Error(ErrorKind::kIo,
                detail::concat("rank ", self, ": ", op, " with rank ", peer, " failed: rank ", culprit,
                               " is dead, so the group is broken; restart the group without it"));
  }
};

namespace {

class InprocTransport final : public comm::Transport {
 public:
  InprocTransport(std::shared_ptr<InprocWorld::State> state, int rank) : state_(std::move(state)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return state_->ranks; }

  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override {
    TROUPE_CHECK(to >= 0 && to < state_->ranks, "send to rank ", to, " of ", state_->ranks);
    state_->throw_if_broken(rank_, to, "send");
    Mailbox& box = state_->mailbox(rank_, to, tag);
    {
      std::lock_guard lock(box.mu);
      box.messages.emplace_back(data.begin(), data.end());  // a copy, as a socket would make
    }
    box.cv.notify_one();
  }

  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override {
    TROUPE_CHECK(from >= 0 && from < state_->ranks, "recv from rank ", from, " of ", state_->ranks);
    Mailbox& box = state_->mailbox(from, rank_, tag);
    std::vector<std::byte> message;
    {
      std::unique_lock lock(box.mu);
      const bool ready = box.cv.wait_for(lock, state_->timeout, [&] {
        return !box.messages.empty() || state_->first_dead.load() >= 0 || state_->aborted.load();
      });
      // A dead peer (or an abort) wins over a queued message: kill() promises every recv fails at once.
      state_->throw_if_broken(rank_, from, "recv");
      if (!ready) {
        throw Error(ErrorKind::kIo,
                    detail::concat("rank ", rank_, ": no message from rank ", from, " (tag ", tag, ", ",
                                   out.size(), " bytes expected) within ", state_->timeout.count(),
                                   " ms; rank ", from, " has failed, stalled or is running a different collective"));
      }
      message = std::move(box.messages.front());
      box.messages.pop_front();
    }
    if (message.size() != out.size()) {
      throw Error(ErrorKind::kIo,
                  detail::concat("rank ", rank_, ": message from rank ", from, " with tag ", tag, " has ",
                                 message.size(), " bytes, expected ", out.size(),
                                 " bytes; the ranks disagree on the buffer size"));
    }
    if (!message.empty()) std::memcpy(out.data(), message.data(), message.size());
  }

 private:
  std::shared_ptr<InprocWorld::State> state_;
  int rank_;
};

}  // namespace

InprocWorld::InprocWorld(int ranks, std::chrono::milliseconds timeout) {
  TROUPE_CHECK(ranks >= 1, "ranks = ", ranks);
  TROUPE_CHECK(timeout.count() > 0, "timeout = ", timeout.count(), " ms");
  state_ = std::make_shared<State>(ranks, timeout);
  local_ = std::make_shared<comm::LocalGroup>(ranks, timeout);
}

InprocWorld::~InprocWorld() = default;

int InprocWorld::size() const { return state_->ranks; }

std::unique_ptr<comm::Transport> InprocWorld::transport(int rank) {
  TROUPE_CHECK(rank >= 0 && rank < state_->ranks, "rank ", rank, " of ", state_->ranks);
  return std::make_unique<InprocTransport>(state_, rank);
}

namespace {
// Wakes every waiter. Taking each mailbox's mutex before notifying orders this after any waiter's
// predicate check, so none can miss a flag set before and sleep until its timeout.
void wake_all(InprocWorld::State& state) {
  std::lock_guard lock(state.mu);
  for (auto& [key, box] : state.mailboxes) {
    { std::lock_guard box_lock(box->mu); }
    box->cv.notify_all();
  }
}
}  // namespace

void InprocWorld::kill(int rank) {
  TROUPE_CHECK(rank >= 0 && rank < state_->ranks, "rank ", rank, " of ", state_->ranks);
  local_->kill(rank);
  state_->dead[static_cast<std::size_t>(rank)].store(true);
  int none = -1;
  state_->first_dead.compare_exchange_strong(none, rank);
  wake_all(*state_);
}

void InprocWorld::abort() {
  local_->abort();
  state_->aborted.store(true);
  wake_all(*state_);
}

void InprocWorld::reform() {
  local_->reform();
  {
    std::lock_guard lock(state_->mu);
    for (auto& [key, box] : state_->mailboxes) {
      std::lock_guard box_lock(box->mu);
      box->messages.clear();
    }
  }
  state_->aborted.store(false);
}

}  // namespace troupe::net
