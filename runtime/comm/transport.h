// Owns the Transport interface: blocking, tagged, fixed-size point-to-point messages between the ranks of one group.
//
// Implementations live under net/, one subfolder each (net/inproc/ now; TCP and NCCL later), so that
// runtime/ includes no CAF, Asio or Cap'n Proto. Collectives (runtime/comm/ring.h) are written against
// this interface only.
//
// Contract every implementation keeps:
//  * Messages between one (sender, receiver, tag) triple arrive in the order they were sent. Messages
//    with different tags, or from different senders, are independent queues.
//  * send() copies `data` before it returns, so the caller may reuse its buffer at once; it does not
//    wait for the receiver.
//  * recv() blocks until the next message from (from, tag) arrives and copies it into `out`. The
//    receiver always knows the size it expects, so messages carry no length the caller must check:
//      - a message of a different size throws troupe::Error(ErrorKind::kIo) naming the peer, the tag,
//        the expected and the received byte counts (the message is consumed);
//      - no message within the transport's timeout throws troupe::Error(ErrorKind::kIo) naming the
//        peer: recv never hangs;
//      - a peer known to be dead throws troupe::Error(ErrorKind::kIo) naming the dead rank at once.
//  * Ranks out of [0, size()) are a bug in the caller and fail TROUPE_CHECK.
//  * One Transport object is used by one thread at a time (the rank's own thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace troupe::comm {

class SharedWindow;

class Transport {
 public:
  virtual ~Transport() = default;

  // This endpoint's rank, in [0, size()).
  virtual int rank() const = 0;
  // How many ranks the group has (>= 1).
  virtual int size() const = 0;

  // Queues a copy of `data` for rank `to` under `tag`. Throws troupe::Error(kIo) when the group is
  // known to be broken (a dead peer).
  virtual void send(int to, std::uint32_t tag, std::span<const std::byte> data) = 0;

  // Waits for the next message from rank `from` under `tag` and copies it into `out`, which must be
  // exactly the message's size. Throws troupe::Error(kIo) on a size mismatch, a timeout or a dead peer.
  virtual void recv(int from, std::uint32_t tag, std::span<std::byte> out) = 0;

  // Like send(), but the transport may write `data` from the caller's memory instead of copying it
  // first (a copy of every byte is what a loopback TCP allreduce spent most of its own CPU time on).
  // The caller lends `data`: it leaves it alive and unchanged until release_lent() returns, or until
  // it knows the message has reached `to` (a message that could only be sent after `to` received
  // this one has arrived). The default copies, as send() does.
  virtual void send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) { send(to, tag, data); }
  // Waits until no send_lent() message still reads the caller's memory: written out, or its link
  // failed or was cut (a peer that reads nothing within the transport's timeout has its link cut, and
  // the next send or recv with it throws). Never throws, so destructors may call it.
  virtual void release_lent() noexcept {}

  // Memory every rank of this group maps (runtime/comm/shared_window.h), or null: only a transport
  // whose ranks all share one host offers one, and the allreduce then runs through it
  // (runtime/comm/shared_memory_allreduce.h) instead of through messages.
  virtual SharedWindow* shared_window() { return nullptr; }
};

}  // namespace troupe::comm
