// Owns the TCP transport's receive side: a link's reader thread, messages waiting in the socket for their recv, in-place and buffered receives, and how a stream ends.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "net/tcp/chunking.h"
#include "net/tcp/transport_state.h"

namespace troupe::net {

namespace asio = boost::asio;

// The header of a chunk: starts a message (claiming the posted recv if it waits for exactly
// this) or checks that it continues the current one. Reader thread.
void TcpTransport::Impl::begin_chunk(Link& l, const wire::ChunkHeader& h, bool defer, std::size_t segment_bytes) {
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
    in = Link::Incoming{true, h.tag, h.total_bytes, 0, 0, nullptr, nullptr, false};
    // The rank's thread may read this payload itself when its recv comes (take_payload): all of the
    // message in this chunk, no padding, nothing to open.
    const bool offerable = defer && segment_bytes == h.total_bytes && !l.opener;
    std::unique_lock lock(mu);
    auto& box = inbox[{l.peer, h.tag}];
    bool awaited = false;
    const auto give_up = tcp::Clock::now() + kDeferLimit;
    while (true) {
      if (l.handover == Link::Handover::kTaking) {  // the rank's thread is reading the payload
        l.parked.wait(lock);
        continue;
      }
      if (l.handover == Link::Handover::kTaken) {
        l.handover = Link::Handover::kNone;
        in.dest = l.offer.into;
        in.taken = true;
        return;
      }
      if (l.handover == Link::Handover::kFailed) {
        l.handover = Link::Handover::kNone;
        throw EndOfStream{l.taken_failure};
      }
      const bool for_us = posted.active && posted.from == l.peer && posted.state == Posted::State::kPending;
      awaited = for_us && posted.tag == h.tag && box.empty();
      // Buffer it when the rank waits for it (awaited), waits for a later message from this peer
      // (which is behind this one), has queued messages of this tag, is closing, or has not asked
      // for it within kDeferLimit.
      if (awaited || !defer || h.total_bytes < kDeferBytes || !box.empty() || (for_us && posted.tag != h.tag) ||
          aborted || stopping || peer_hung_up(l) || tcp::Clock::now() >= give_up) {
        break;
      }
      // Nobody has asked for it yet: leave the payload in the socket until a recv does, so it
      // can go straight into place (a pipelined ring sends a segment before its receiver has
      // posted the recv; buffering it would cost a copy and the memory).
      l.offer = Link::Offer{offerable, h.tag, h.total_bytes, nullptr};
      l.parked.wait_for(lock, std::chrono::milliseconds(2));
    }
    l.offer.active = false;
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

// A message that started arriving before its recv was posted: if that recv now waits for it,
// the rest goes straight into the caller's buffer (the reader copies what it already has).
void TcpTransport::Impl::claim_late(Link& l) {
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
std::byte* TcpTransport::Impl::place(Link& l, const wire::ChunkHeader& h, std::size_t segment_bytes) {
  begin_chunk(l, h, true, segment_bytes);
  if (!l.in.dest || h.offset + segment_bytes > l.in.total) return nullptr;
  std::byte* at = l.in.dest + h.offset;
  return reinterpret_cast<std::uintptr_t>(at) % 8 == 0 ? at : nullptr;
}

void TcpTransport::Impl::end_chunk(Link& l, const wire::InChunk& chunk, bool begun) {
  auto& in = l.in;
  if (!begun) begin_chunk(l, chunk.header, false);  // a frame without a payload segment
  const std::size_t n = chunk.payload.size();
  if (in.taken) {  // its recv has returned it already: nothing to hand over
    if (n != in.total) malformed(detail::concat("chunk 0 of tag ", in.tag, " carries ", n, " of its message's ", in.total, " bytes"));
    in = Link::Incoming{};
    return;
  }
  if (n == 0 && in.total > 0) malformed(detail::concat("chunk ", chunk.header.index, " of tag ", in.tag, " is empty"));
  if (in.received + n > in.total) {
    malformed(detail::concat("chunk ", chunk.header.index, " of tag ", in.tag, " overruns its message: ",
                             in.received + n, " of ", in.total, " bytes"));
  }
  std::byte* at = in.dest ? in.dest + in.received : nullptr;
  if (at && n > 0 && chunk.payload.data() != at) std::memcpy(at, chunk.payload.data(), n);
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

std::string TcpTransport::Impl::stream_failure(const boost::system::error_code& ec) {
  if (ec == asio::error::eof) return "its connection closed in the middle of a frame";
  if (ec == asio::error::timed_out) return "its host stopped acknowledging (the host or the network to it is down): " + ec.message();
  return ec.message();
}

TcpTransport::Impl::Taken TcpTransport::Impl::take_payload(Link& l, std::span<std::byte> out, tcp::Clock::time_point deadline) {
  // What the reader read ahead first, then the socket. Non-blocking reads, each wait a poll() bounded
  // by the recv's deadline: a stalled sender times the recv out as it would with the reader.
  auto& ahead = l.ahead;
  std::size_t done = std::min(out.size(), ahead.stop - ahead.begin);
  if (done) std::memcpy(out.data(), ahead.bytes.data() + ahead.begin, done);
  ahead.begin += done;
  const int fd = l.socket->native_handle();
  while (done < out.size()) {
    const ssize_t n = ::recv(fd, out.data() + done, out.size() - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return {Taken::Outcome::kEnded, stream_failure(asio::error::eof)};
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return {Taken::Outcome::kEnded, stream_failure(boost::system::error_code(errno, boost::system::system_category()))};
    }
    // Rounded up: kTimeout only once the deadline has passed, as recv's own check then agrees.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - tcp::Clock::now()).count();
    if (left <= 0) return {Taken::Outcome::kTimeout, ""};
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
  }
  return {};
}

namespace {

// A protected link's frame whose seal does not match (reader thread).
struct SealMismatch {};
// ... or whose header (the frame's length) does not match its header tag.
struct HeaderMismatch {};

}  // namespace

// On a protected link a frame that fails to open or to decode was not sent as it arrived: the
// error names the link and says what that means, rather than blaming the peer's process.
tcp::Link::Failure TcpTransport::Impl::integrity_failure(Link& l, std::uint64_t frame, const std::string& what) {
  return {detail::concat("the link to rank ", l.peer, on_host(l.peer), " at ", l.address, " failed its integrity check"),
          detail::concat("frame ", frame, " from it after the handshake: ", what,
                         "; something between the two ranks changed the data (the link is ",
                         tcp::protection_name(l.protection), "-protected, comm.integrity)")};
}

void TcpTransport::Impl::reader_loop(Link& l) {
  Link::Failure end;  // why the stream ended
  bool malformed_frame = false;
  std::uint64_t frame_index = 0;  // a protected link: the number of the frame being read
  try {
    std::size_t frame_bytes = 0;  // bytes of the current frame read so far
    std::vector<std::byte>& buffer = l.ahead.bytes;
    std::size_t& begin = l.ahead.begin;
    std::size_t& stop = l.ahead.stop;
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
          if (ec == asio::error::eof && frame_bytes + done == 0) throw EndOfStream{""};
          throw EndOfStream{stream_failure(ec)};
        }
      }
      frame_bytes += out.size();
    };
    // A protected link: every byte the decoder reads goes through the opener (a chunk's payload
    // segment is decrypted in place at Protection::encrypt), and the frame's seal follows it.
    tcp::FrameOpener* opener = l.opener.get();
    bool payload_next = false;  // the decoder's next read is a chunk's payload segment
    auto read_frame = [&](std::span<std::byte> out) {
      if (payload_next && l.in.taken) {  // the rank's thread has read it (take_payload)
        payload_next = false;
        frame_bytes += out.size();
        return;
      }
      read_exact(out);
      if (opener) {
        if (payload_next && opener->level() == tcp::Protection::encrypt) {
          opener->decrypt(out);
        } else {
          opener->authenticate(out);
        }
      }
      payload_next = false;
    };
    // A protected link: the header's tag follows the header, and is checked before the reader
    // waits for the body whose length the header gives.
    auto check_header = [&](std::span<const std::byte> header) {
      tcp::HeaderTag tag;
      read_exact(std::as_writable_bytes(std::span(tag)));
      if (!opener->header_matches(header, tag)) throw HeaderMismatch{};
    };
    const wire::FrameReader::HeaderRead on_header = opener ? wire::FrameReader::HeaderRead(check_header) : nullptr;
    wire::FrameReader reader;
    while (true) {
      frame_bytes = 0;
      bool begun = false;
      if (opener) {
        frame_index = opener->frames();
        opener->begin();
      }
      auto frame = reader.read(read_frame, [&](const wire::ChunkHeader& h, std::size_t segment_bytes) {
        begun = true;
        payload_next = true;
        return place(l, h, segment_bytes);
      }, on_header);
      if (opener) {
        tcp::Seal seal;
        read_exact(std::as_writable_bytes(std::span(seal)));
        // Nothing of the frame counts (a message completed, a goodbye) until its seal matches.
        if (!opener->finish(seal)) throw SealMismatch{};
      }
      if (l.goodbye) malformed("a frame arrived after its goodbye");
      if (auto* chunk = std::get_if<wire::InChunk>(&frame)) {
        end_chunk(l, *chunk, begun);
      } else if (const auto* bye = std::get_if<wire::Goodbye>(&std::get<wire::Control>(frame))) {
        if (l.in.active) malformed("goodbye in the middle of a message");
        std::lock_guard lock(mu);
        l.goodbye = true;
        l.goodbye_why = bye->why;
      } else {
        malformed(detail::concat("unexpected ", wire::control_name(std::get<wire::Control>(frame)),
                                 " frame after the handshake"));
      }
    }
  } catch (const EndOfStream& e) {
    end = {detail::concat("rank ", l.peer, on_host(l.peer), " is dead"),
           e.why.empty() ? "its connection closed without a goodbye: the process exited, was killed or aborted" : e.why};
  } catch (const SealMismatch&) {
    malformed_frame = true;
    end = integrity_failure(l, frame_index, "its seal does not match (it was changed or injected, or replays, reorders or follows a "
                               "dropped frame)");
    l.shutdown();
  } catch (const HeaderMismatch&) {
    malformed_frame = true;
    end = integrity_failure(l, frame_index, "its header's tag does not match (its length was changed, or the frame was injected); "
                               "the link broke before waiting for the bytes that header announced");
    l.shutdown();
  } catch (const Error& e) {
    malformed_frame = true;
    end = l.opener ? integrity_failure(l, frame_index, detail::concat("it cannot be decoded (", e.what(), ")"))
                   : Link::Failure{detail::concat("rank ", l.peer, " sent a malformed frame: ", e.what()), ""};
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
  if (on_link_end) on_link_end();
}

}  // namespace troupe::net
