// Owns the TCP transport's public API: TcpOptions, rank 0's TcpListener, connect_tcp() and TcpTransport, the comm::Transport between processes over loopback or a network.
//
// Use (one process per rank, all on this machine):
//
//   net::TcpOptions options{.rank = r, .size = n, .address = "127.0.0.1:29500",
//                           .secret = net::secret_from_environment(), .timeout = 60s};
//   std::unique_ptr<net::TcpTransport> t = net::connect_tcp(options);   // blocks until the mesh is up
//   comm::allreduce_ring(*t, gradients);
//
// Rendezvous: rank 0 listens at `address` (loopback only); every other rank binds its own
// listener on a free port of the same host, connects to rank 0 and says hello (rank, size, that
// port). When all n - 1 have joined, rank 0 sends each the roster of ports; rank r then connects
// to every rank 1..r-1 and accepts from r+1..n-1. Each pair of ranks ends with one TCP connection
// (TCP_NODELAY), kept for the transport's life. Every connection is authenticated both ways
// (net/tcp/auth.h): a process that does not know `secret` is refused, told why, reported through
// `on_reject` on the refusing side, and never joins. For tests (port 0), create a TcpListener
// first, read its port, and hand it to rank 0's connect_tcp.
//
// Data path: a message travels as frames of at most `chunk_bytes` payload (net/wire/frame_codec.h,
// net/tcp/chunking.h). While a link is idle, send() writes the frames itself, straight from the
// caller's buffer, as far as the socket takes them without blocking; what does not fit is copied
// and queued for the link's writer thread, which sends queued frames in one scatter-gather call.
// send() never waits for the receiver. A reader thread per link decodes frames; a chunk's payload
// is read straight into the buffer of the recv() that asked for it, by the recv's own thread when
// the reader already holds that message's header (one chunk of whole words, an unprotected link):
// the reader offers it, and recv reads it rather than wake the reader and wait. A large message (>= 16 KiB)
// that no recv has asked for yet waits in the socket until one does (the pipelined ring sends a
// segment before its receiver posts the recv), unless a recv wants a later message from the same
// peer, the peer hangs up, or 50 ms pass; it is then buffered, and recv copies it. So in the common case the
// only copies are the kernel's. send_lent() (comm::Transport) queues what the socket does not take by
// reference instead of copying it, on an unprotected link; release_lent() waits until the writers
// have written it (cutting a link whose peer reads nothing within `timeout`).
//
// Protection (net/tcp/link_security.h; TcpOptions::integrity, ::encrypt): on a protected link every
// frame's header is followed by its 8-byte header tag and the frame by its AES-256-GCM seal, computed by send() in the same order
// the frames go out and checked by the reader before the frame counts; at `encrypt` the payload is
// encrypted into the copy send() makes (such links skip the direct write). A frame that fails its
// check breaks the group like a malformed one, named as the link's failed integrity check.
//
// Failure model (as net/inproc's, with real sockets):
//  * recv() throws troupe::Error(kIo) naming the peer on a size mismatch, when nothing arrives
//    within `timeout`, or when the group is broken.
//  * A peer whose connection ends without a goodbye (its process died or called abort()), or that
//    sends a malformed frame, breaks the group: every pending and every future recv and send on this
//    rank throws at once, naming that rank and what happened ("rank 2 is dead: ...", "rank 2 sent a
//    malformed frame: bad magic ..."). Every rank holds a connection to every other, so each learns
//    of a dead process directly.
//  * A peer that destroyed its transport normally said goodbye: messages it sent before are still
//    delivered; a recv that needs another message from it fails at once ("rank 2 closed its
//    transport"); the rest of the group is unaffected.
//  * A recv that times out while its message is half-received closes that link (the stream cannot
//    be resynchronised), which then counts as broken.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/tcp/address.h"
#include "net/tcp/link_security.h"
#include "runtime/comm/transport.h"
#include "runtime/config/choices.h"

namespace troupe::net {

struct TcpOptions {
  int rank = 0;
  int size = 1;
  // Rank 0's rendezvous address, HOST:PORT (config key comm.address): in 127.0.0.0/8 for
  // Reach::loopback; any IPv4 address or host name for Reach::network.
  std::string address = "127.0.0.1:29500";
  Reach reach = Reach::loopback;
  // Reach::network, ranks other than 0: the interface whose IPv4 address this rank accepts on and
  // tells the others (comm.interface, as NCCL_SOCKET_IFNAME); empty: the address its connection to
  // rank 0 leaves from, i.e. the interface that routes to rank 0.
  std::string interface;
  // This rank's host name as the others learn it (TcpTransport::hostnames); empty: gethostname().
  std::string hostname;
  // Shared by every rank of the job, never sent; must not be empty. secret_from_environment()
  // reads TROUPE_SECRET.
  std::string secret;
  // Frame protection after the handshake (comm.integrity, comm.encrypt; net/tcp/link_security.h):
  // each link runs at the stronger of its two ends' wishes. auto: integrity on links whose peer is
  // not on loopback.
  IntegrityPolicy integrity = IntegrityPolicy::automatic;
  bool encrypt = false;
  // How long a recv waits for its message (comm.timeout_s), and the rendezvous too unless
  // rendezvous_timeout is set (> 0): processes may take longer to start than a collective step.
  std::chrono::milliseconds timeout{60'000};
  std::chrono::milliseconds rendezvous_timeout{0};
  // Payload bytes per frame: a multiple of 8 in [8, wire::kMaxChunkBytes]. Measured fastest at
  // 1 MiB here (README "TCP transport"); tests make it small to reach the multi-chunk paths.
  std::size_t chunk_bytes = std::size_t{1} << 20;
  // Told (with a one-line reason) about each connection the rendezvous refused: a wrong secret,
  // garbage, a duplicate rank. Default: a line on stderr.
  std::function<void(const std::string&)> on_reject;
  // Called on a link's reader thread, with no lock held, when the connection to a peer ends for any
  // reason (goodbye, death, a malformed frame). The shared-memory transport (net/shm), whose data
  // never crosses these links, wakes its waiting rank with it: a dead peer is then seen as fast as
  // over TCP.
  std::function<void()> on_link_end;
  // Rank 0's rendezvous: called about every 50 ms while it waits for ranks to join, on its thread. A
  // supervisor restarts the ranks that died from here (runtime/process/replica_processes.h); whatever it
  // throws ends the rendezvous.
  std::function<void()> while_waiting;
};

// Rank 0's rendezvous socket, bound and listening from construction, so its port is known before
// any rank connects. "127.0.0.1:0" takes a free port; with Reach::network, "0.0.0.0:29500" listens
// on every interface. Throws Error(kConfig) for a bad address (or, Reach::loopback, a non-loopback
// one), Error(kIo) when the port cannot be bound.
class TcpListener {
 public:
  explicit TcpListener(const std::string& address, Reach reach = Reach::loopback);
  TcpListener(TcpListener&&) noexcept;
  TcpListener& operator=(TcpListener&&) noexcept;
  ~TcpListener();

  int port() const;
  std::string address() const;  // "127.0.0.1:<port>": what the other ranks pass as TcpOptions::address

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

class TcpTransport final : public comm::Transport {
 public:
  // Lets queued sends drain, says goodbye to every peer (waiting at most `timeout` for a peer that
  // stopped reading), then closes. After abort(), or destroyed while an exception unwinds the stack
  // of a rank whose group was still whole (this rank failed on its own), it closes at once without
  // a goodbye, so the peers see this rank as dead. (A rank that unwinds because the group is
  // already broken says goodbye: its peers learn of the root failure from their own connection to
  // the dead rank, and name that rank.)
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  int rank() const override;
  int size() const override;
  void send(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void recv(int from, std::uint32_t tag, std::span<std::byte> out) override;
  void send_lent(int to, std::uint32_t tag, std::span<const std::byte> data) override;
  void release_lent() noexcept override;

  // Every rank's host name, by rank, as each reported it in the rendezvous: ranks with the same name
  // share a host.
  const std::vector<std::string>& hostnames() const;

  // Simulates this rank crashing: drops every connection without a goodbye (the peers' recvs fail
  // at once, naming this rank as dead), and this rank's own pending and future calls throw. Safe
  // from any thread, any number of times.
  void abort();

  // Throws the troupe::Error(kIo) that a send or recv (`op`) with `peer` would throw now because this
  // transport was aborted or the group is broken (naming the dead rank); returns otherwise.
  void throw_if_broken(int peer, const char* op);
  // Whether `peer` destroyed its transport in order (its goodbye arrived).
  bool peer_closed(int peer);
  // How the link to `peer` protects its frames, as its handshake settled (off for this rank itself).
  tcp::Protection protection(int peer) const;

  struct Impl;
  explicit TcpTransport(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Joins the group described by `options`: blocks until this rank is connected to every other, or
// throws troupe::Error — kConfig for bad options (rank, size, address, empty secret, chunk size),
// kIo when the rendezvous fails (a rank missing at the deadline, refused by rank 0, ...).
// Rank 0 binds options.address itself.
std::unique_ptr<TcpTransport> connect_tcp(const TcpOptions& options);

// Rank 0 only: joins with a listener bound beforehand (options.address is then ignored).
std::unique_ptr<TcpTransport> connect_tcp(const TcpOptions& options, TcpListener listener);
// Rank 0 only: the same, keeping the listener bound afterwards, for the next time the group forms (a
// data-parallel group re-formed after a rank process died): no other process can take its port meanwhile.
std::unique_ptr<TcpTransport> connect_tcp_on(const TcpOptions& options, TcpListener& listener);

// The job's secret from the environment variable TROUPE_SECRET; Error(kConfig) when it is unset
// or empty. A launcher generates one (e.g. 32 random hex digits) and passes it to every rank.
std::string secret_from_environment();

}  // namespace troupe::net
