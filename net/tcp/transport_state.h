// Owns the TCP transport's shared state (links with their threads, inboxes, the posted recv, the buffer pool) and the split of its work between net/tcp/link_reader.cpp, net/tcp/link_writer.cpp and net/tcp/tcp_transport.cpp.
//
// Internal to net/tcp. Locks: Impl::mu guards the inboxes, the posted recv and every link's state;
// a link's out_mu guards its send queue; write_mu is held by whoever writes to a socket; pool_mu is
// taken after mu. The rank's own thread calls send/recv; each link has a reader and a writer thread.
#pragma once

#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp/link_security.h"
#include "net/tcp/socket_io.h"
#include "net/tcp/tcp_transport.h"
#include "net/wire/frame_codec.h"
#include "runtime/error.h"

namespace troupe::net {

namespace tcp {

// A message in an inbox: complete, or still being assembled by a link's reader.
struct Message {
  std::size_t size = 0;
  std::unique_ptr<std::uint64_t[]> words;  // null when the payload was discarded (size mismatch)
  bool complete = false;
  std::byte* bytes() { return reinterpret_cast<std::byte*>(words.get()); }
};

// The recv() in progress on the rank's thread, which a reader may fill in place.
struct Posted {
  enum class State { kPending, kClaimed, kDone, kFailed };
  bool active = false;
  int from = 0;
  std::uint32_t tag = 0;
  std::span<std::byte> out;
  State state = State::kPending;
};

// Ends a reader's stream: the peer closed, or the socket failed.
struct EndOfStream {
  std::string why;
};

// One connection to one peer, with its two threads.
struct Link {
  int peer = 0;
  std::unique_ptr<tcp::Socket> socket;
  std::string address;  // the peer's "host:port", for errors

  // A protected link (net/tcp/link_security.h): the sealer is used by the rank's thread (send, close),
  // which seals frames in the order they go on the wire; the opener by the reader thread. Both null: off.
  tcp::Protection protection = tcp::Protection::off;
  std::unique_ptr<tcp::FrameSealer> sealer;
  std::unique_ptr<tcp::FrameOpener> opener;
  std::thread writer;
  std::thread reader;

  // Writer queue (out_mu).
  std::mutex out_mu;
  std::condition_variable out_cv;
  struct Outgoing {
    wire::OutFrame frame;
    std::vector<std::byte> rest;  // instead of a frame (is_rest): the unsent end of one that send() began
    std::size_t payload_bytes = 0;
    bool goodbye = false;  // the last frame: the writer shuts its half of the connection after it
    bool sealed = false;   // a protected link: `seals.header_tag` follows the frame's header, `seals.seal` its end
    tcp::FrameSeals seals{};
    // A lent send (comm::Transport::send_lent): the payload, in the caller's memory, goes out after
    // the frame (or `rest`), then lent_padding zero bytes.
    std::span<const std::byte> lent;
    std::size_t lent_padding = 0;
    bool is_rest = false;  // `rest` (then `lent`) stand for the frame
  };
  std::deque<Outgoing> out;
  bool in_flight = false;  // the writer holds frames taken from `out` that it has not written yet
  bool stop_writing = false;
  // Lent sends queued or being written: release_lent() waits on lent_cv until none is left, or
  // the writer has exited (what it left in the queue is never read).
  std::size_t lent_pending = 0;
  bool writer_exited = false;
  std::condition_variable lent_cv;
  // Held by whoever writes to the socket: the writer thread, or send() writing directly.
  std::mutex write_mu;

  // Guarded by Impl::mu.
  enum class State { kOpen, kClosed, kFailed } state = State::kOpen;
  bool goodbye = false;       // the peer said goodbye (frames after it are malformed)
  std::string goodbye_why;    // ... and why, when it left because its group broke (empty: it finished)
  std::condition_variable parked;  // the reader waits here for a recv of the message it holds
  bool reader_done = false;
  bool writer_done = false;
  // Why the link failed: a headline naming the peer ("rank 2 is dead") and how it showed.
  struct Failure {
    std::string headline;
    std::string detail;
  };
  Failure failure;
  Failure local_reason;  // set before this side shuts the socket, so the reader reports why

  // The message the reader is assembling (reader thread only, except `claimed`, see Impl).
  struct Incoming {
    bool active = false;
    std::uint32_t tag = 0;
    std::uint64_t total = 0;
    std::uint64_t received = 0;
    std::uint32_t next_index = 0;
    std::byte* dest = nullptr;  // the posted recv's buffer or the message's; null: discard
    Message* message = nullptr; // null when writing into the posted recv's buffer
    bool taken = false;         // the rank's thread read the payload itself (Impl::take_payload)
  } in;

  // What the reader has read from the socket beyond the frame bytes asked for (its small reads go
  // through here, so a frame's header costs one system call). Reader thread; the rank's thread
  // while it takes a payload (Handover::kTaking).
  struct ReadAhead {
    std::vector<std::byte> bytes = std::vector<std::byte>(64 * 1024);
    std::size_t begin = 0, stop = 0;
  } ahead;

  // A message whose payload the rank's thread may read itself (Impl::take_payload), offered by the
  // reader while it waits for that message's recv with the header read and the payload in the
  // socket: one chunk, a whole number of words, on an unprotected link. Guarded by Impl::mu.
  struct Offer {
    bool active = false;
    std::uint32_t tag = 0;
    std::uint64_t bytes = 0;
    std::byte* into = nullptr;  // set by the taker: where the payload went
  } offer;
  // kTaking: the rank's thread is reading the offered payload (the reader waits, touching nothing);
  // kTaken: it has read all of it; kFailed: the stream ended or stalled under it (taken_failure says
  // how). The reader returns the state to kNone. Guarded by Impl::mu.
  enum class Handover { kNone, kTaking, kTaken, kFailed } handover = Handover::kNone;
  std::string taken_failure;

  void shutdown() {
    boost::system::error_code ignored;
    socket->shutdown(boost::asio::socket_base::shutdown_both, ignored);
  }
};

}  // namespace tcp

struct TcpTransport::Impl {
  using Link = tcp::Link;
  using Message = tcp::Message;
  using Posted = tcp::Posted;
  using EndOfStream = tcp::EndOfStream;

  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  std::size_t chunk_bytes = 0;
  std::function<void()> on_link_end;  // TcpOptions::on_link_end
  std::shared_ptr<boost::asio::io_context> io;
  std::vector<std::unique_ptr<Link>> links;  // by rank; null at this rank
  std::vector<std::string> hostnames;        // by rank, from the rendezvous
  bool name_hosts = false;                   // ranks on several hosts: errors name the peer's host
  // " (on host node07)" after a peer's rank in errors, when ranks may be on several hosts.
  std::string on_host(int r) const {
    return name_hosts && r >= 0 && r < static_cast<int>(hostnames.size()) ? " (on host " + hostnames[static_cast<std::size_t>(r)] + ")" : "";
  }

  std::mutex mu;
  std::condition_variable cv;  // the rank's thread waits here; readers and writers notify
  std::map<std::pair<int, std::uint32_t>, std::deque<Message>> inbox;
  Posted posted;

  // Buffers (chunk storage on the send side, early messages on the receive side) are reused, by
  // size in words: fresh memory costs a page fault per 4 KiB on first touch, which measured as
  // slow as the copy into it. At most kPoolBytes are kept; guarded by pool_mu (taken after mu).
  static constexpr std::size_t kPoolBytes = std::size_t{128} << 20;
  std::mutex pool_mu;
  std::map<std::size_t, std::vector<std::unique_ptr<std::uint64_t[]>>> pool;
  std::size_t pooled_bytes = 0;

  std::unique_ptr<std::uint64_t[]> take_buffer(std::size_t bytes) {
    const std::size_t words = (bytes + 7) / 8;
    {
      std::lock_guard lock(pool_mu);
      auto it = pool.find(words);
      if (it != pool.end() && !it->second.empty()) {
        auto buffer = std::move(it->second.back());
        it->second.pop_back();
        pooled_bytes -= words * 8;
        return buffer;
      }
    }
    return std::unique_ptr<std::uint64_t[]>(new std::uint64_t[words]);
  }
  void give_buffer(std::unique_ptr<std::uint64_t[]> buffer, std::size_t bytes) {
    const std::size_t words = (bytes + 7) / 8;
    if (!buffer || words * 8 < 4096) return;  // small ones are cheap to allocate
    std::lock_guard lock(pool_mu);
    if (pooled_bytes + words * 8 > kPoolBytes) return;
    pool[words].push_back(std::move(buffer));
    pooled_bytes += words * 8;
  }

  // The group as this rank sees it (mu).
  int first_failed = -1;  // the first peer whose link failed: the group is broken
  bool aborted = false;   // abort() was called
  bool stopping = false;  // close() has begun: readers stop waiting for recvs

  // Readers holding a message for a recv not yet posted wait on their link's `parked` (with mu).
  void wake_readers() {
    for (auto& l : links) {
      if (l) l->parked.notify_all();
    }
  }

  Link& link(int peer) { return *links[static_cast<std::size_t>(peer)]; }

  // --- errors (callers hold mu) -------------------------------------------------------------

  void throw_if_broken(int peer, const char* op) {
    if (aborted) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": ", op, " with rank ", peer,
                                                 " failed: this rank's transport was aborted"));
    }
    if (first_failed < 0) return;
    // The first failure is the cause; others (a rank that failed because of it) follow from it.
    const bool peer_failed_too = peer != rank && peer != first_failed && link(peer).state == Link::State::kFailed;
    throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": ", op, " with rank ", peer, " failed: ",
                                               link(first_failed).failure.headline, ", so the group is broken",
                                               peer_failed_too ? detail::concat(" (rank ", peer, " has failed too)") : "",
                                               "; restart the group without rank ", first_failed,
                                               link(first_failed).failure.detail.empty() ? "" : " (" + link(first_failed).failure.detail + ")"));
  }

  // --- reader side ----------------------------------------------------------------------------

  [[noreturn]] static void malformed(const std::string& what) { throw Error(ErrorKind::kIo, what); }

  // The header of a chunk: starts a message (claiming the posted recv if it waits for exactly
  // this) or checks that it continues the current one. Reader thread.
  // `segment_bytes`: the payload segment the frame carries (0: not known, no offer).
  void begin_chunk(Link& l, const wire::ChunkHeader& h, bool defer, std::size_t segment_bytes = 0);

  // Messages at least this large wait in the socket for their recv (see begin_chunk).
  static constexpr std::uint64_t kDeferBytes = 16 * 1024;
  // ... and for at most this long. A payload left unread fills the socket, so a sender that then
  // dies cannot get its end-of-stream through (its FIN queues behind the unsent bytes): the reader
  // must read on to see it. This bounds how late a dead peer is noticed.
  static constexpr std::chrono::milliseconds kDeferLimit{50};

  // Whether the peer has closed its end or the connection failed, although unread bytes may
  // remain: a waiting reader must then read on to learn how the stream ends.
  static bool peer_hung_up(Link& l) {
    pollfd p{l.socket->native_handle(), POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLERR | POLLHUP));
  }

  // A message that started arriving before its recv was posted: if that recv now waits for it,
  // the rest goes straight into the caller's buffer (the reader copies what it already has).
  void claim_late(Link& l);

  // Where the reader puts a chunk's payload segment: in place when it fits and is aligned.
  std::byte* place(Link& l, const wire::ChunkHeader& h, std::size_t segment_bytes);

  void end_chunk(Link& l, const wire::InChunk& chunk, bool begun);

  // recv()'s fast path (rank thread, mu not held): the reader has offered exactly this message
  // (Link::offer), whose payload is still in the socket; reads it straight into `out` instead of
  // waking the reader and waiting for it (two thread switches fewer per message).
  struct Taken {
    enum class Outcome { kDone, kEnded, kTimeout } outcome = Outcome::kDone;
    std::string why;  // kEnded: how the stream ended
  };
  static Taken take_payload(Link& l, std::span<std::byte> out, tcp::Clock::time_point deadline);

  // How a stream's read failed (`ec`), for the failure's detail.
  static std::string stream_failure(const boost::system::error_code& ec);

  void reader_loop(Link& l);
  Link::Failure integrity_failure(Link& l, std::uint64_t frame, const std::string& what);

  // --- writer side ----------------------------------------------------------------------------

  void writer_loop(Link& l);

  // send()'s fast path, with l.write_mu held and nothing queued or in flight: writes `parts` (a
  // frame's pieces, then its payload and padding, from the caller's memory) for as long as the
  // socket takes them without blocking. Returns the bytes written.
  static std::size_t write_now(Link& l, const std::vector<std::span<const std::byte>>& parts);

  // Whether send() may write to `to` itself: nothing queued or being written.
  static bool idle(Link& l);

  // Queues the unsent end of `parts` after its first `skip` bytes: copied, except what lies in
  // `lent` (one of the parts, in the caller's memory, of a lent send), which is queued by reference.
  void enqueue_rest(Link& l, const std::vector<std::span<const std::byte>>& parts, std::size_t skip,
                    std::span<const std::byte> lent = {});

  // Queues a chunk's frame without its payload, then `payload` from the caller's memory (lent).
  void enqueue_lent(Link& l, wire::OutFrame header, std::span<const std::byte> payload);

  // send() and send_lent() (`lent`: an unprotected link may queue the caller's memory by reference).
  void send(int to, std::uint32_t tag, std::span<const std::byte> data, bool lent);

  // comm::Transport::release_lent: waits for every link's lent sends; a link whose peer reads none
  // of them within the timeout is cut, so that its writer stops reading the caller's memory.
  void release_lent() noexcept;

  // Queues `frame` for the writer; on a protected link with its `seals` (sealed already, in order).
  void enqueue(Link& l, wire::OutFrame frame, std::size_t payload_bytes, bool goodbye = false,
               const tcp::FrameSeals* seals = nullptr);

  // A protected link: seals `frame` (the next one on the wire; pieces[0] its header) whole, as it is.
  static tcp::FrameSeals seal_whole(Link& l, const std::vector<std::span<const std::byte>>& pieces);

  // --- shutdown -------------------------------------------------------------------------------

  void abort_links();

  void close(bool orderly);
};

}  // namespace troupe::net
