// Owns the shared-memory transport's public API: ShmOptions, connect_shm() and ShmTransport, the comm::Transport between ranks on one host through rings in shared memory.
//
// Use (one process per rank, or one thread per rank, all on this host):
//
//   net::ShmOptions options{.tcp = {.rank = r, .size = n, .address = "127.0.0.1:29500",
//                                   .secret = net::secret_from_environment(), .timeout = 60s}};
//   std::unique_ptr<net::ShmTransport> t = net::connect_shm(options);   // blocks until every ring is mapped
//   comm::allreduce(*t, gradients);
//
// Setup: the ranks first form the TCP transport's authenticated mesh (net/tcp/tcp_transport.h; same
// rendezvous, same secret, same refusals). Every rank creates its segment (net/shm/segment.h: an
// anonymous memfd holding one ring per sending rank) and tells each peer over its TCP link where to
// find it; each peer maps it through /proc/PID/fd and says so; when all have, the creator closes its
// descriptor. No name is ever created in /dev/shm, so nothing survives the job, however it ends.
//
// Data path: rank s sends to rank r through ring s of r's segment, a single-producer,
// single-consumer ring of `slots` slots of `slot_bytes` each (net/shm/slot_ring.h). send() copies the
// message into free slots itself, slot by slot, ringing r's data doorbell (a futex; net/shm/doorbell.h)
// after each, so r can copy slot k out while slot k + 1 is written; what does not fit is copied
// aside and written by this transport's flusher thread as r frees slots, so send() never waits for
// the receiver. recv() copies the slots of the message it asks for straight into the caller's
// buffer; slots of other tags on that ring are copied into an inbox on the way (per (sender, tag) FIFO,
// as the contract requires).
//
// Failure model (as net/tcp's, whose links stay open for exactly this):
//  * recv() throws troupe::Error(kIo) naming the peer on a size mismatch (the message is consumed),
//    when nothing arrives within the timeout, or when the group is broken.
//  * A peer whose process dies (SIGKILL included) or aborts closes its TCP connection without a
//    goodbye; that link's reader wakes this rank's waiting recv at once, which throws naming the dead
//    rank ("rank 2 is dead, so the group is broken; ..."), as over TCP.
//  * A peer that destroyed its transport in order first wrote everything it had sent into the rings;
//    a recv that needs more from it fails at once ("rank 2 closed its transport").
//  * A recv that times out in the middle of a message drops the rest of it as it arrives; the slots
//    carry (tag, total, offset), so the ring stays in step.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "net/tcp/tcp_transport.h"
#include "runtime/comm/transport.h"

namespace troupe::net {

// Which peers a ShmTransport shares rings with.
enum class ShmPeers {
  all,        // every rank: the group lives on one host (comm.transport = shm); a rank elsewhere is an error
  same_host,  // the ranks that report this rank's host name (TcpTransport::hostnames) and can map its memory;
              // the others are reached over links() (net/routed/routed_transport.h routes them)
};

struct ShmOptions {
  // The rendezvous and liveness links: rank, size, rank 0's address, the job's secret, the timeout.
  TcpOptions tcp;
  ShmPeers peers = ShmPeers::all;
  // Payload bytes per slot (comm.shm_slot_bytes): a multiple of 64 in [64, 256 MiB]. 1 MiB matches the
  // ring collective's segments; tests make it small to reach the multi-slot paths.
  std::size_t slot_bytes = std::size_t{1} << 20;
  // Slots per ring (comm.shm_slots), in [2, 1024]: how far a sender may run ahead of its receiver
  // before its flusher thread takes over.
  std::size_t slots = 4;
  // The shared window the allreduce runs through when every rank shares memory (ShmPeers::all;
  // net/shm/shm_window.h, runtime/comm/shared_memory_allreduce.h): `pieces` staging pieces of
  // `piece_bytes` per rank. piece_bytes: a multiple of 64 in [64, 256 MiB]; pieces: 0 (no window:
  // the allreduce sends messages through the rings) or [2, 1024].
  std::size_t piece_bytes = std::size_t{256} << 10;
  std::size_t pieces = 4;
};

class ShmTransport final : public comm::Transport {
 public:
  // Waits (at most the timeout) until what this rank sent is in the rings, marks its segment closed
  // and says goodbye over TCP. After abort(), or destroyed while an exception unwinds a rank whose
  // group was whole, it closes at once without a goodbye, so the peers see this rank as dead.
  ~ShmTransport() override;
  ShmTransport(const ShmTransport&) = delete;
  ShmTransport& operator=(const ShmTransport&) = delete;

  int rank() const override;
  int size() const override;
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override;
  // As send(), but what the ring has no room for is not copied aside: the flusher writes it from the
  // caller's memory (comm::Transport's lending contract). release_lent() copies aside whatever lent
  // bytes the receiver has not made room for yet, so it returns at once.
  void send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void release_lent() noexcept override;
  // Every rank's staging region and counters (ShmOptions::pieces), or null under ShmPeers::same_host
  // or with no pieces.
  comm::SharedWindow* shared_window() override;

  // Simulates this rank crashing (as TcpTransport::abort): the peers' recvs fail at once, naming
  // this rank as dead, and this rank's own pending and future calls throw. Safe from any thread.
  void abort();

  // Each rank's host name as the TCP rendezvous learned it (TcpTransport::hostnames).
  const std::vector<std::string>& hostnames() const;

  // Whether send() and recv() with `peer` go through shared memory: every peer with ShmPeers::all; with
  // ShmPeers::same_host, those on this rank's host. Calling send() or recv() with any other peer is a bug.
  bool shares_memory_with(int peer) const;
  // The authenticated TCP mesh under the rings (every pair of ranks), which reaches the peers this rank
  // shares no memory with. It lives as long as this transport; its setup messages were consumed before
  // connect_shm returned, so its tags are free for the caller.
  TcpTransport& links();

  struct Impl;
  explicit ShmTransport(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Joins the group described by `options`: blocks until this rank has mapped every peer's segment, or
// throws troupe::Error — kConfig for bad options (those of connect_tcp, a slot size or count out of
// range), kIo when the rendezvous fails or a peer's segment cannot be mapped (another host, another
// user). Rank 0 binds options.tcp.address itself.
std::unique_ptr<ShmTransport> connect_shm(const ShmOptions& options);

// Rank 0 only: joins with a listener bound beforehand (options.tcp.address is then ignored).
std::unique_ptr<ShmTransport> connect_shm(const ShmOptions& options, TcpListener listener);

}  // namespace troupe::net
