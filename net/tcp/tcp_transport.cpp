// Owns the TCP transport's data path: per-link writer and reader threads, the chunking of sends, in-place receives, the inboxes, and the failure and shutdown protocol.
#include "net/tcp/tcp_transport.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "net/tcp/chunking.h"
#include "net/tcp/rendezvous.h"
#include "net/wire/frame_codec.h"
#include "runtime/error.h"

namespace troupe::net {

namespace asio = boost::asio;
using tcp::Clock;

namespace {

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
  std::thread writer;
  std::thread reader;

  // Writer queue (out_mu).
  std::mutex out_mu;
  std::condition_variable out_cv;
  struct Outgoing {
    wire::OutFrame frame;
    std::vector<std::byte> rest;  // instead of a frame: the unsent end of one that send() began
    std::size_t payload_bytes = 0;
    bool goodbye = false;  // the last frame: the writer shuts its half of the connection after it
  };
  std::deque<Outgoing> out;
  bool in_flight = false;  // the writer holds frames taken from `out` that it has not written yet
  bool stop_writing = false;
  // Held by whoever writes to the socket: the writer thread, or send() writing directly.
  std::mutex write_mu;

  // Guarded by Impl::mu.
  enum class State { kOpen, kClosed, kFailed } state = State::kOpen;
  bool goodbye = false;       // the peer said goodbye (frames after it are malformed)
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
  } in;

  void shutdown() {
    boost::system::error_code ignored;
    socket->shutdown(asio::socket_base::shutdown_both, ignored);
  }
};

}  // namespace

struct TcpTransport::Impl {
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  std::size_t chunk_bytes = 0;
  std::shared_ptr<asio::io_context> io;
  std::vector<std::unique_ptr<Link>> links;  // by rank; null at this rank

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
  int first_failed = -1;
  bool aborted = false;
  bool stopping = false;             // close() has begun: readers stop waiting for recvs
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
  void begin_chunk(Link& l, const wire::ChunkHeader& h, bool defer) {
    auto& in = l.in;
    if (h.index == 0) {
      if (in.active) {
        malformed(detail::concat("a new message (tag ", h.tag, ") began before message tag ", in.tag, " was complete (",
                                 in.received, " of ", in.total, " bytes)"));
      }
      if (h.offset != 0) malformed(detail::concat("chunk 0 of tag ", h.tag, " starts at offset ", h.offset));
      if (h.total_bytes > tcp::kMaxMessageBytes) {
        malformed(detail::concat("a message of ", h.total_bytes, " bytes exceeds the limit of ", tcp::kMaxMessageBytes));
      }
      in = Link::Incoming{true, h.tag, h.total_bytes, 0, 0, nullptr, nullptr};
      std::unique_lock lock(mu);
      auto& box = inbox[{l.peer, h.tag}];
      bool awaited = false;
      while (true) {
        const bool for_us = posted.active && posted.from == l.peer && posted.state == Posted::State::kPending;
        awaited = for_us && posted.tag == h.tag && box.empty();
        // Buffer it when the rank waits for it (awaited), waits for a later message from this peer
        // (which is behind this one), has queued messages of this tag, or is closing.
        if (awaited || !defer || h.total_bytes < kDeferBytes || !box.empty() || (for_us && posted.tag != h.tag) ||
            aborted || stopping || peer_hung_up(l)) {
          break;
        }
        // Nobody has asked for it yet: leave the payload in the socket until a recv does, so it
        // can go straight into place (a pipelined ring sends a segment before its receiver has
        // posted the recv; buffering it would cost a copy and the memory).
        l.parked.wait_for(lock, std::chrono::milliseconds(2));
      }
      if (awaited && posted.out.size() == h.total_bytes) {
        posted.state = Posted::State::kClaimed;  // straight into the caller's buffer
        in.dest = posted.out.data();
        return;
      }
      Message m;
      m.size = static_cast<std::size_t>(h.total_bytes);
      if (!awaited) {  // nobody waits yet (or a recv of another size does: keep only the size)
        try {
          m.words = take_buffer(m.size);
        } catch (const std::bad_alloc&) {
          malformed(detail::concat("no memory to buffer a message of ", m.size, " bytes"));
        }
      }
      box.push_back(std::move(m));
      in.message = &box.back();
      in.dest = in.message->bytes();
      return;
    }
    if (!in.active || h.tag != in.tag || h.index != in.next_index || h.offset != in.received || h.total_bytes != in.total) {
      malformed(detail::concat("chunk ", h.index, " of tag ", h.tag, " at offset ", h.offset,
                               " does not continue the current message (tag ", in.tag, ", chunk ", in.next_index,
                               " expected at offset ", in.received, ")"));
    }
    if (in.message && in.dest) claim_late(l);
  }

  // Messages at least this large wait in the socket for their recv (see begin_chunk).
  static constexpr std::uint64_t kDeferBytes = 16 * 1024;

  // Whether the peer has closed its end or the connection failed, although unread bytes may
  // remain: a waiting reader must then read on to learn how the stream ends.
  static bool peer_hung_up(Link& l) {
    pollfd p{l.socket->native_handle(), POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLERR | POLLHUP));
  }

  // A message that started arriving before its recv was posted: if that recv now waits for it,
  // the rest goes straight into the caller's buffer (the reader copies what it already has).
  void claim_late(Link& l) {
    auto& in = l.in;
    std::unique_lock lock(mu);
    auto& box = inbox[{l.peer, in.tag}];
    if (!(posted.active && posted.from == l.peer && posted.tag == in.tag && posted.state == Posted::State::kPending &&
          box.size() == 1 && &box.front() == in.message && posted.out.size() == in.total)) {
      return;
    }
    posted.state = Posted::State::kClaimed;
    Message taken = std::move(box.front());
    box.pop_front();
    std::byte* out = posted.out.data();
    lock.unlock();
    if (in.received) std::memcpy(out, taken.bytes(), static_cast<std::size_t>(in.received));
    give_buffer(std::move(taken.words), taken.size);
    in.message = nullptr;
    in.dest = out;
  }

  // Where the reader puts a chunk's payload segment: in place when it fits and is aligned.
  std::byte* place(Link& l, const wire::ChunkHeader& h, std::size_t segment_bytes) {
    begin_chunk(l, h, true);
    if (!l.in.dest || h.offset + segment_bytes > l.in.total) return nullptr;
    std::byte* at = l.in.dest + h.offset;
    return reinterpret_cast<std::uintptr_t>(at) % 8 == 0 ? at : nullptr;
  }

  void end_chunk(Link& l, const wire::InChunk& chunk, bool begun) {
    auto& in = l.in;
    if (!begun) begin_chunk(l, chunk.header, false);  // a frame without a payload segment
    const std::size_t n = chunk.payload.size();
    if (n == 0 && in.total > 0) malformed(detail::concat("chunk ", chunk.header.index, " of tag ", in.tag, " is empty"));
    if (in.received + n > in.total) {
      malformed(detail::concat("chunk ", chunk.header.index, " of tag ", in.tag, " overruns its message: ",
                               in.received + n, " of ", in.total, " bytes"));
    }
    std::byte* at = in.dest ? in.dest + in.received : nullptr;
    if (at && chunk.payload.data() != at) std::memcpy(at, chunk.payload.data(), n);
    in.received += n;
    ++in.next_index;
    if (in.received < in.total) return;
    {
      std::lock_guard lock(mu);
      if (in.message) {
        in.message->complete = true;
      } else {
        posted.state = Posted::State::kDone;
      }
    }
    in.active = false;
    cv.notify_all();
  }

  void reader_loop(Link& l) {
    Link::Failure end;  // why the stream ended
    bool malformed_frame = false;
    try {
      std::size_t frame_bytes = 0;  // bytes of the current frame read so far
      std::vector<std::byte> buffer(64 * 1024);
      std::size_t begin = 0, stop = 0;
      auto read_exact = [&](std::span<std::byte> out) {
        std::size_t done = std::min(out.size(), stop - begin);
        if (done) std::memcpy(out.data(), buffer.data() + begin, done);
        begin += done;
        while (done < out.size()) {
          boost::system::error_code ec;
          std::size_t n;
          const std::size_t left = out.size() - done;
          if (left >= buffer.size() / 4) {  // large: straight into place
            n = l.socket->read_some(asio::buffer(out.data() + done, left), ec);
            done += n;
          } else {  // small: through the buffer, so a frame's header costs one system call
            n = l.socket->read_some(asio::buffer(buffer), ec);
            begin = 0;
            stop = n;
            const std::size_t take = std::min(left, n);
            std::memcpy(out.data() + done, buffer.data(), take);
            begin = take;
            done += take;
          }
          if (ec) {
            if (ec == asio::error::eof) {
              throw EndOfStream{frame_bytes + done == 0 ? "" : "its connection closed in the middle of a frame"};
            }
            throw EndOfStream{ec.message()};
          }
        }
        frame_bytes += out.size();
      };
      wire::FrameReader reader;
      while (true) {
        frame_bytes = 0;
        bool begun = false;
        auto frame = reader.read(read_exact, [&](const wire::ChunkHeader& h, std::size_t segment_bytes) {
          begun = true;
          return place(l, h, segment_bytes);
        });
        if (l.goodbye) malformed("a frame arrived after its goodbye");
        if (auto* chunk = std::get_if<wire::InChunk>(&frame)) {
          end_chunk(l, *chunk, begun);
        } else if (std::holds_alternative<wire::Goodbye>(std::get<wire::Control>(frame))) {
          if (l.in.active) malformed("goodbye in the middle of a message");
          std::lock_guard lock(mu);
          l.goodbye = true;
        } else {
          malformed(detail::concat("unexpected ", wire::control_name(std::get<wire::Control>(frame)),
                                   " frame after the handshake"));
        }
      }
    } catch (const EndOfStream& e) {
      end = {detail::concat("rank ", l.peer, " is dead"),
             e.why.empty() ? "its connection closed without a goodbye: the process exited, was killed or aborted" : e.why};
    } catch (const Error& e) {
      malformed_frame = true;
      end = {detail::concat("rank ", l.peer, " sent a malformed frame: ", e.what()), ""};
      l.shutdown();  // the stream cannot be resynchronised; the peer sees this rank leave
    } catch (const std::exception& e) {
      end = {detail::concat("the link to rank ", l.peer, " failed: ", e.what()), ""};
      l.shutdown();
    }
    {
      std::lock_guard lock(mu);
      if (posted.active && posted.from == l.peer && posted.state == Posted::State::kClaimed) {
        posted.state = Posted::State::kFailed;
      }
      if (l.goodbye && !malformed_frame) {
        l.state = Link::State::kClosed;  // it said goodbye: how the connection then ends does not matter
      } else if (l.state == Link::State::kOpen) {
        l.state = Link::State::kFailed;
        l.failure = l.local_reason.headline.empty() ? end : l.local_reason;
        if (first_failed < 0) first_failed = l.peer;
      }
      l.reader_done = true;
    }
    cv.notify_all();
  }

  // --- writer side ----------------------------------------------------------------------------

  void writer_loop(Link& l) {
    std::vector<Link::Outgoing> batch;
    std::vector<asio::const_buffer> buffers;
    bool said_goodbye = false;
    while (!said_goodbye) {
      {
        std::unique_lock lock(l.out_mu);
        l.out_cv.wait(lock, [&] { return !l.out.empty() || l.stop_writing; });
        if (l.stop_writing) break;
        // Everything queued goes out in one scatter-gather write: small messages share a call.
        while (!l.out.empty()) {
          batch.push_back(std::move(l.out.front()));
          l.out.pop_front();
        }
        l.in_flight = true;
      }
      buffers.clear();
      for (const auto& o : batch) {
        if (!o.rest.empty()) {
          buffers.emplace_back(o.rest.data(), o.rest.size());
        } else {
          for (const auto& piece : o.frame.pieces()) buffers.emplace_back(piece.data(), piece.size());
        }
        said_goodbye = said_goodbye || o.goodbye;
      }
      boost::system::error_code ec;
      {
        std::lock_guard write_lock(l.write_mu);
        asio::write(*l.socket, buffers, ec);
      }
      for (auto& o : batch) give_buffer(o.frame.take_storage(), o.payload_bytes);
      batch.clear();
      {
        std::lock_guard lock(l.out_mu);
        l.in_flight = false;
      }
      if (ec) {
        {
          std::lock_guard lock(mu);
          if (l.state == Link::State::kOpen && l.local_reason.headline.empty()) {
            l.local_reason = {detail::concat("rank ", l.peer, " is dead"), "sending to it failed: " + ec.message()};
          }
        }
        l.shutdown();  // the reader ends too, and reports
        break;
      }
    }
    if (said_goodbye) {
      boost::system::error_code ignored;
      l.socket->shutdown(asio::socket_base::shutdown_send, ignored);
    }
    {
      std::lock_guard lock(mu);
      l.writer_done = true;
    }
    cv.notify_all();
  }

  // send()'s fast path, with l.write_mu held and nothing queued or in flight: writes `parts` (a
  // frame's pieces, then its payload and padding, from the caller's memory) for as long as the
  // socket takes them without blocking. Returns the bytes written.
  static std::size_t write_now(Link& l, const std::vector<std::span<const std::byte>>& parts) {
    std::vector<iovec> iov;
    for (const auto& p : parts) {
      if (!p.empty()) iov.push_back(iovec{const_cast<std::byte*>(p.data()), p.size()});
    }
    std::size_t done = 0, at = 0;
    while (at < iov.size()) {
      msghdr m{};
      m.msg_iov = iov.data() + at;
      m.msg_iovlen = std::min<std::size_t>(iov.size() - at, 64);
      const ssize_t n = ::sendmsg(l.socket->native_handle(), &m, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // full (the rest goes through the writer) or failed (the writer reports it)
      }
      done += static_cast<std::size_t>(n);
      for (auto left = static_cast<std::size_t>(n); left > 0;) {
        const std::size_t take = std::min(left, iov[at].iov_len);
        iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + take;
        iov[at].iov_len -= take;
        left -= take;
        if (iov[at].iov_len == 0) ++at;
      }
    }
    return done;
  }

  // Whether send() may write to `to` itself: nothing queued or being written.
  static bool idle(Link& l) {
    std::lock_guard lock(l.out_mu);
    return l.out.empty() && !l.in_flight && !l.stop_writing;
  }

  void enqueue_rest(Link& l, const std::vector<std::span<const std::byte>>& parts, std::size_t skip) {
    Link::Outgoing o;
    for (const auto& p : parts) {
      const std::size_t drop = std::min(skip, p.size());
      skip -= drop;
      o.rest.insert(o.rest.end(), p.begin() + static_cast<std::ptrdiff_t>(drop), p.end());
    }
    {
      std::lock_guard lock(l.out_mu);
      l.out.push_back(std::move(o));
    }
    l.out_cv.notify_one();
  }

  void enqueue(Link& l, wire::OutFrame frame, std::size_t payload_bytes, bool goodbye = false) {
    {
      std::lock_guard lock(l.out_mu);
      l.out.push_back(Link::Outgoing{std::move(frame), {}, payload_bytes, goodbye});
    }
    l.out_cv.notify_one();
  }

  // --- shutdown -------------------------------------------------------------------------------

  void abort_links() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    wake_readers();
    for (auto& l : links) {
      if (!l) continue;
      {
        std::lock_guard lock(l->out_mu);
        l->stop_writing = true;
      }
      l->out_cv.notify_one();
      l->shutdown();
    }
  }

  void close(bool orderly) {
    if (orderly) {
      for (auto& l : links) {
        if (l) enqueue(*l, wire::encode(wire::Goodbye{}), 0, true);
      }
      // Queued frames and the goodbye go out before the connections close; a peer that stopped
      // reading holds this up for the timeout at most.
      std::unique_lock lock(mu);
      cv.wait_until(lock, Clock::now() + timeout, [&] {
        for (auto& l : links) {
          if (l && !l->writer_done) return false;
        }
        return true;
      });
    }
    abort_links();
    for (auto& l : links) {
      if (!l) continue;
      if (l->writer.joinable()) l->writer.join();
      if (l->reader.joinable()) l->reader.join();
      boost::system::error_code ignored;
      l->socket->close(ignored);
    }
  }
};

// ---------------------------------------------------------------------------------------------

TcpTransport::TcpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TcpTransport::~TcpTransport() {
  bool orderly;
  {
    std::lock_guard lock(impl_->mu);
    orderly = !impl_->aborted && (std::uncaught_exceptions() == 0 || impl_->first_failed >= 0);
  }
  impl_->close(orderly);
}

int TcpTransport::rank() const { return impl_->rank; }
int TcpTransport::size() const { return impl_->size; }

void TcpTransport::abort() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->aborted = true;
  }
  impl_->cv.notify_all();
  impl_->wake_readers();
  impl_->abort_links();
}

void TcpTransport::send(int to, std::uint32_t tag, std::span<const std::byte> data) {
  Impl& s = *impl_;
  TROUPE_CHECK(to >= 0 && to < s.size, "send to rank ", to, " of ", s.size);
  {
    std::lock_guard lock(s.mu);
    s.throw_if_broken(to, "send");
    if (to == s.rank) {  // to itself: straight into the inbox
      Message m;
      m.size = data.size();
      m.words.reset(new std::uint64_t[(m.size + 7) / 8]);
      if (!data.empty()) std::memcpy(m.bytes(), data.data(), data.size());
      m.complete = true;
      s.inbox[{to, tag}].push_back(std::move(m));
      return;
    }
    if (s.link(to).state == Link::State::kClosed) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": send to rank ", to, " failed: rank ", to,
                                                 " closed its transport"));
    }
  }
  Link& l = s.link(to);
  const auto chunks = tcp::chunk_ranges(data.size(), s.chunk_bytes);
  std::size_t i = 0;
  // Fast path: while the link is idle, write the frames straight from the caller's buffer, as far as
  // the socket takes them without blocking (the kernel's copy is then the copy send() promises).
  // The unsent end of a frame is copied and queued; later chunks take the queued path below.
  {
    std::unique_lock write_lock(l.write_mu, std::try_to_lock);
    if (write_lock.owns_lock() && Impl::idle(l)) {
      static constexpr std::byte kZeros[8] = {};
      for (; i < chunks.size(); ++i) {
        const tcp::ChunkRange& c = chunks[i];
        const wire::ChunkHeader header{tag, static_cast<std::uint32_t>(i), data.size(), c.offset};
        const wire::OutFrame frame =
            c.length ? wire::encode_chunk_header(header, c.length) : wire::encode_chunk(header, nullptr, 0);
        std::vector<std::span<const std::byte>> parts = frame.pieces();
        parts.push_back(data.subspan(c.offset, c.length));
        parts.emplace_back(kZeros, c.length ? wire::payload_padding(c.length) : 0);
        const std::size_t total = frame.bytes() + c.length + parts.back().size();
        const std::size_t written = Impl::write_now(l, parts);
        if (written == total) continue;
        if (written > 0) {
          s.enqueue_rest(l, parts, written);
          ++i;
        }
        break;
      }
    }
  }
  for (; i < chunks.size(); ++i) {
    const tcp::ChunkRange& c = chunks[i];
    const auto index = static_cast<std::uint32_t>(i);
    // The copy send() promises, into storage the frame owns and writes by reference; the padding
    // to a whole word goes on the wire, so it is zeroed.
    std::unique_ptr<std::uint64_t[]> storage;
    if (c.length) {
      const std::size_t words = (c.length + 7) / 8;
      storage = s.take_buffer(c.length);
      storage[words - 1] = 0;
      std::memcpy(storage.get(), data.data() + c.offset, c.length);
    }
    s.enqueue(l, wire::encode_chunk(wire::ChunkHeader{tag, index, data.size(), c.offset}, std::move(storage), c.length),
              c.length);
  }
}

void TcpTransport::recv(int from, std::uint32_t tag, std::span<std::byte> out) {
  Impl& s = *impl_;
  TROUPE_CHECK(from >= 0 && from < s.size, "recv from rank ", from, " of ", s.size);
  std::unique_lock lock(s.mu);
  auto& box = s.inbox[{from, tag}];
  s.posted = Posted{true, from, tag, out, Posted::State::kPending};
  if (from != s.rank) s.link(from).parked.notify_all();  // only this peer's reader can be affected
  const auto deadline = Clock::now() + s.timeout;
  enum class Outcome { kBroken, kClosed, kTimeout } outcome;
  while (true) {
    if (s.posted.state == Posted::State::kDone) {
      s.posted.active = false;
      return;
    }
    if (!box.empty() && box.front().complete) {
      Message m = std::move(box.front());
      box.pop_front();
      s.posted.active = false;
      lock.unlock();
      if (m.size != out.size()) {
        throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": message from rank ", from, " with tag ", tag, " has ",
                                                   m.size, " bytes, expected ", out.size(),
                                                   " bytes; the ranks disagree on the buffer size"));
      }
      if (m.size) std::memcpy(out.data(), m.bytes(), m.size);
      s.give_buffer(std::move(m.words), m.size);
      return;
    }
    if (s.aborted || s.first_failed >= 0 || s.posted.state == Posted::State::kFailed) {
      outcome = Outcome::kBroken;
      break;
    }
    if (from != s.rank && s.link(from).state == Link::State::kClosed && box.empty()) {
      outcome = Outcome::kClosed;  // its goodbye came after everything it sent
      break;
    }
    if (Clock::now() >= deadline) {
      outcome = Outcome::kTimeout;
      break;
    }
    s.cv.wait_until(lock, deadline);
  }

  // Failing: if a reader is writing into `out`, stop it before `out` goes back to the caller.
  bool partial = false;
  if (s.posted.state == Posted::State::kClaimed) {
    Link& l = s.link(from);
    partial = true;
    if (l.local_reason.headline.empty()) {
      l.local_reason = {detail::concat("rank ", from, " stalled in the middle of a message"),
                        "this rank closed the link when its recv timed out"};
    }
    lock.unlock();
    l.shutdown();
    lock.lock();
    s.cv.wait(lock, [&] { return s.posted.state != Posted::State::kClaimed; });
  }
  s.posted.active = false;
  switch (outcome) {
    case Outcome::kBroken:
      s.throw_if_broken(from, "recv");
      throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": recv from rank ", from, " failed"));
    case Outcome::kClosed:
      throw Error(ErrorKind::kIo, detail::concat("rank ", s.rank, ": recv from rank ", from, " (tag ", tag, ", ", out.size(),
                                                 " bytes) failed: rank ", from,
                                                 " closed its transport without sending it; it has left the collective"));
    case Outcome::kTimeout:
      throw Error(ErrorKind::kIo,
                  detail::concat("rank ", s.rank, ": no message from rank ", from, " (tag ", tag, ", ", out.size(),
                                 " bytes expected) within ", s.timeout.count(), " ms",
                                 partial ? " (it stopped in the middle of the message; the link is now closed)" : "",
                                 "; rank ", from, " has failed, stalled or is running a different collective"));
  }
  TROUPE_CHECK(false, "unreachable");
}

// ---------------------------------------------------------------------------------------------

namespace {

void validate(const TcpOptions& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP transport: rank ", o.rank, " of ", o.size,
                                                   " ranks; need 0 <= rank < size"));
  }
  if (o.secret.empty()) {
    throw Error(ErrorKind::kConfig, "TCP transport: the job's secret is empty; set TROUPE_SECRET to the same value for every rank");
  }
  if (o.timeout.count() <= 0) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP transport: timeout ", o.timeout.count(), " ms must be positive"));
  }
  if (o.chunk_bytes < 8 || o.chunk_bytes % 8 != 0 || o.chunk_bytes > wire::kMaxChunkBytes) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP transport: chunk_bytes ", o.chunk_bytes,
                                                   " must be a multiple of 8 in [8, ", wire::kMaxChunkBytes, "]"));
  }
}

std::unique_ptr<TcpTransport> start(const TcpOptions& options, tcp::Mesh mesh) {
  auto impl = std::make_unique<TcpTransport::Impl>();
  impl->rank = options.rank;
  impl->size = options.size;
  impl->timeout = options.timeout;
  impl->chunk_bytes = options.chunk_bytes;
  impl->io = mesh.io;
  impl->links.resize(static_cast<std::size_t>(options.size));
  for (int r = 0; r < options.size; ++r) {
    auto& socket = mesh.links[static_cast<std::size_t>(r)];
    if (!socket) continue;
    socket->non_blocking(false);  // the data path blocks in its own threads
    auto l = std::make_unique<Link>();
    l->peer = r;
    l->socket = std::move(socket);
    impl->links[static_cast<std::size_t>(r)] = std::move(l);
  }
  TcpTransport::Impl* raw = impl.get();
  for (auto& l : raw->links) {
    if (!l) continue;
    l->reader = std::thread([raw, link = l.get()] { raw->reader_loop(*link); });
    l->writer = std::thread([raw, link = l.get()] { raw->writer_loop(*link); });
  }
  return std::make_unique<TcpTransport>(std::move(impl));
}

}  // namespace

std::unique_ptr<TcpTransport> connect_tcp(const TcpOptions& options) {
  validate(options);
  if (options.rank == 0) return connect_tcp(options, TcpListener(options.address));
  tcp::parse_loopback_address(options.address);
  return start(options, tcp::form_mesh(options, nullptr));
}

std::unique_ptr<TcpTransport> connect_tcp(const TcpOptions& options, TcpListener listener) {
  validate(options);
  TROUPE_CHECK(options.rank == 0, "only rank 0 listens; rank ", options.rank, " was given a listener");
  return start(options, tcp::form_mesh(options, &listener.impl()));
}

std::string secret_from_environment() {
  const char* secret = std::getenv("TROUPE_SECRET");
  if (!secret || !*secret) {
    throw Error(ErrorKind::kConfig,
                "TROUPE_SECRET is not set: the TCP transport needs a secret shared by every rank of the job "
                "(e.g. export TROUPE_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'))");
  }
  return secret;
}

}  // namespace troupe::net
