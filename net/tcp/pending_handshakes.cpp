// Owns the threads, deadlines and the oldest-first limit of the acceptor's concurrent handshakes.
#include "net/tcp/pending_handshakes.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "runtime/error.h"

namespace troupe::net::tcp {

PendingHandshakes::PendingHandshakes(std::size_t limit, Clock::duration per_connection, Handshake handshake)
    : limit_(std::max<std::size_t>(limit, 1)), per_connection_(per_connection), handshake_(std::move(handshake)) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw Error(ErrorKind::kIo, detail::concat("eventfd failed: ", std::strerror(errno)));
}

PendingHandshakes::~PendingHandshakes() {
  stop();
  ::close(wake_fd_);
}

void PendingHandshakes::start(std::unique_ptr<Socket> socket, Clock::time_point rendezvous_deadline) {
  std::lock_guard lock(mu_);
  std::size_t pending = 0;
  for (const auto& e : entries_) pending += !e.done && e.cut == Cut::kNo;
  if (pending >= limit_) {
    // entries_ is in arrival order, so the first one still handshaking is the oldest.
    for (auto& e : entries_) {
      if (!e.done && e.cut == Cut::kNo) {
        e.cut = Cut::kForLimit;
        ::shutdown(e.socket->native_handle(), SHUT_RDWR);  // its blocked read or write returns at once
        break;
      }
    }
  }
  Entry& entry = entries_.emplace_back();
  entry.from = peer_text(*socket);
  entry.socket = std::move(socket);
  entry.deadline = std::min(rendezvous_deadline, Clock::now() + per_connection_);
  entry.thread = std::thread([this, &entry] { run(entry); });
}

void PendingHandshakes::run(Entry& entry) {
  Outcome outcome;
  bool refused = false;
  try {
    outcome.hello = handshake_(*entry.socket, entry.deadline);
  } catch (const HandshakeRefused& e) {
    outcome.problem = e.what();
    refused = true;
  } catch (const Error& e) {
    outcome.problem = e.what();
  } catch (const DeadlineExceeded&) {
    outcome.problem = "no complete handshake in time";
  } catch (const std::exception& e) {
    outcome.problem = e.what();
  }
  std::lock_guard lock(mu_);
  if (entry.cut == Cut::kForLimit) {
    outcome.hello.reset();
    outcome.problem = detail::concat("closed unauthenticated: more than ", limit_,
                                     " connections were handshaking at once, and this was the oldest");
  }
  entry.outcome = std::move(outcome);
  entry.refused = refused;
  entry.done = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
}

std::vector<PendingHandshakes::Outcome> PendingHandshakes::collect(std::list<Entry>& finished, bool drop_stopped) {
  std::vector<Outcome> out;
  for (auto& e : finished) {
    if (e.thread.joinable()) e.thread.join();
    if (drop_stopped && e.cut == Cut::kStopped && !e.refused) continue;
    e.outcome.socket = std::move(e.socket);
    e.outcome.from = std::move(e.from);
    out.push_back(std::move(e.outcome));
  }
  return out;
}

std::vector<PendingHandshakes::Outcome> PendingHandshakes::take_finished() {
  std::list<Entry> finished;
  {
    std::lock_guard lock(mu_);
    std::uint64_t count;
    [[maybe_unused]] const auto read = ::read(wake_fd_, &count, sizeof count);
    for (auto it = entries_.begin(); it != entries_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), entries_, it);
      it = next;
    }
  }
  return collect(finished, false);
}

std::vector<PendingHandshakes::Outcome> PendingHandshakes::stop() {
  std::list<Entry> all;
  {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      if (!e.done && e.cut == Cut::kNo) {
        e.cut = Cut::kStopped;
        ::shutdown(e.socket->native_handle(), SHUT_RDWR);
      }
    }
    all.splice(all.end(), entries_);
  }
  return collect(all, true);
}

}  // namespace troupe::net::tcp
