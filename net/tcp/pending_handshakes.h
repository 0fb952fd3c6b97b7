// Owns the acceptor's unauthenticated connections while they handshake: each on its own thread with its own deadline, at most a fixed number at once.
//
// Why: a listener that handshakes one connection at a time lets anyone who can reach its port delay
// the job — about 30 silent connections, each given 2 s, used to make a rendezvous time out. Here a
// silent or trickling connection only holds its own thread until its own deadline, so ranks that
// connect beside it finish their handshakes in milliseconds. When `limit` connections are pending
// and another arrives, the OLDEST pending one is closed (shutdown, which ends its handshake at
// once): a flood pushes out its own earlier connections, never the rank that arrives after it,
// whose handshake then completes long before `limit` further connections can follow.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp/socket_io.h"
#include "runtime/error.h"
#include "net/wire/frame_codec.h"

namespace troupe::net::tcp {

// Thrown by a Handshake that refused its peer (a wrong MAC, a wrong size, a duplicate rank): a
// verdict, reported even when stop() closes the connection before its thread could record it.
struct HandshakeRefused : Error {
  using Error::Error;
};

class PendingHandshakes {
 public:
  // The acceptor's side of one handshake: returns the peer's hello or throws Error(kIo) /
  // DeadlineExceeded. Runs on the connection's own thread, so it must be safe to call concurrently.
  using Handshake = std::function<wire::Hello(Socket&, Clock::time_point deadline)>;

  struct Outcome {
    std::unique_ptr<Socket> socket;
    std::string from;                  // the peer's address, for messages
    std::optional<wire::Hello> hello;  // set when the handshake succeeded
    std::string problem;               // why not, otherwise
  };

  // Each connection gets min(its rendezvous deadline, its arrival + `per_connection`).
  PendingHandshakes(std::size_t limit, Clock::duration per_connection, Handshake handshake);
  ~PendingHandshakes();  // stop(), outcomes dropped
  PendingHandshakes(const PendingHandshakes&) = delete;
  PendingHandshakes& operator=(const PendingHandshakes&) = delete;

  // Starts `socket`'s handshake; first closes the oldest pending connection if `limit` are pending.
  void start(std::unique_ptr<Socket> socket, Clock::time_point rendezvous_deadline);

  // Readable (an eventfd) whenever a handshake has finished since the last take_finished().
  int wake_fd() const { return wake_fd_; }

  // Handshakes that ended (succeeded, refused, timed out or closed for the limit), oldest first.
  std::vector<Outcome> take_finished();

  // Closes every connection still handshaking (the rendezvous is over or failed), waits for their
  // threads, and returns the outcomes that ended on their own before, and the refusals
  // (HandshakeRefused) a handshake made even if its thread recorded them only after the close.
  std::vector<Outcome> stop();

  std::size_t limit() const { return limit_; }

 private:
  enum class Cut { kNo, kForLimit, kStopped };
  struct Entry {
    std::unique_ptr<Socket> socket;
    std::string from;
    Clock::time_point deadline;
    std::thread thread;
    bool done = false;
    Cut cut = Cut::kNo;
    bool refused = false;  // the handshake's own verdict (HandshakeRefused), not the close's
    Outcome outcome;
  };
  void run(Entry& entry);
  std::vector<Outcome> collect(std::list<Entry>& finished, bool drop_stopped);

  const std::size_t limit_;
  const Clock::duration per_connection_;
  const Handshake handshake_;
  int wake_fd_ = -1;
  std::mutex mu_;
  std::list<Entry> entries_;  // stable addresses: each thread holds its own entry
};

}  // namespace troupe::net::tcp
