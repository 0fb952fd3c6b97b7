// Owns the frame codec's Cap'n Proto side: building frames without copying payloads, and reading them in stages so a chunk's payload lands where it belongs.
#include "net/wire/frame_codec.h"

#include <capnp/message.h>
#include <capnp/orphan.h>
#include <kj/exception.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "net/wire/frame.capnp.h"
#include "runtime/error.h"

namespace troupe::net::wire {

namespace {

// Large enough that control frames (the largest is a roster of 2-byte ports or a reject reason)
// stay one segment, small enough to be cheap per chunk.
constexpr unsigned kFirstSegmentWords = 256;

[[noreturn]] void malformed(const std::string& what) { throw Error(ErrorKind::kIo, what); }

// `bytes` (at most kMaxChunkBytes + 8) of zeros that are safe to read: a read-only private mapping
// of the zero page, made once per process; it takes no memory however large the segment.
const std::byte* zero_segment(std::size_t bytes) {
  static const std::byte* const zeros = [] {
    void* p = ::mmap(nullptr, kMaxChunkBytes + 8, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TROUPE_CHECK(p != MAP_FAILED, "mapping ", kMaxChunkBytes + 8, " bytes of zeros failed");
    return static_cast<const std::byte*>(p);
  }();
  TROUPE_CHECK(bytes <= kMaxChunkBytes + 8, "a zero segment of ", bytes, " bytes");
  return zeros;
}

std::size_t round_up8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

const capnp::word* words_of(const std::uint64_t* p) { return reinterpret_cast<const capnp::word*>(p); }

kj::ArrayPtr<const kj::byte> bytes_of(const std::array<std::uint8_t, 32>& a) {
  return kj::ArrayPtr<const kj::byte>(a.data(), a.size());
}

std::array<std::uint8_t, 32> fixed32(capnp::Data::Reader data, const char* what) {
  std::array<std::uint8_t, 32> out{};
  if (data.size() != out.size()) malformed(detail::concat(what, " has ", data.size(), " bytes, expected 32"));
  std::memcpy(out.data(), data.begin(), out.size());
  return out;
}

}  // namespace

const char* control_name(const Control& control) {
  static constexpr const char* kNames[] = {"goodbye", "challenge", "hello", "welcome", "reject", "roster"};
  return kNames[control.index()];
}

// ---------------------------------------------------------------------------------------------
// Writing

struct OutFrame::Impl {
  std::unique_ptr<std::uint64_t[]> storage;  // a chunk's payload; declared first, outlives the builder
  capnp::MallocMessageBuilder builder{kFirstSegmentWords};
  std::vector<std::uint32_t> prefix;  // preamble (2 words of u32) and the segment table
  std::vector<std::span<const std::byte>> pieces;
  std::size_t bytes = 0;

  // Lays out preamble + segment table + segments as the pieces of one write.
  void finish() {
    const auto segments = builder.getSegmentsForOutput();
    prefix.assign({kMagic, std::uint32_t{kVersion}, static_cast<std::uint32_t>(segments.size() - 1)});
    for (const auto& s : segments) prefix.push_back(static_cast<std::uint32_t>(s.size()));
    if (prefix.size() % 2) prefix.push_back(0);  // the table pads to a whole word
    pieces.clear();
    pieces.emplace_back(reinterpret_cast<const std::byte*>(prefix.data()), prefix.size() * sizeof(std::uint32_t));
    for (const auto& s : segments) pieces.emplace_back(reinterpret_cast<const std::byte*>(s.begin()), s.size() * sizeof(capnp::word));
    bytes = 0;
    for (const auto& p : pieces) bytes += p.size();
  }
};

OutFrame::OutFrame() = default;
OutFrame::OutFrame(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OutFrame::OutFrame(OutFrame&&) noexcept = default;
OutFrame& OutFrame::operator=(OutFrame&&) noexcept = default;
OutFrame::~OutFrame() = default;

const std::vector<std::span<const std::byte>>& OutFrame::pieces() const {
  TROUPE_CHECK(impl_ != nullptr, "pieces() of an empty OutFrame");
  return impl_->pieces;
}
std::size_t OutFrame::bytes() const { return impl_ ? impl_->bytes : 0; }
std::unique_ptr<std::uint64_t[]> OutFrame::take_storage() { return impl_ ? std::move(impl_->storage) : nullptr; }

OutFrame encode(const Control& control) {
  auto impl = std::make_unique<OutFrame::Impl>();
  auto frame = impl->builder.initRoot<schema::Frame>();
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, Goodbye>) {
          if (c.why.empty()) {
            frame.setGoodbye();
          } else {
            frame.setFarewell(c.why);
          }
        } else if constexpr (std::is_same_v<T, Challenge>) {
          auto out = frame.initChallenge();
          out.setRank(c.rank);
          out.setNonce(bytes_of(c.nonce));
        } else if constexpr (std::is_same_v<T, Hello>) {
          auto out = frame.initHello();
          out.setRank(c.rank);
          out.setSize(c.size);
          out.setListenPort(c.listen_port);
          out.setNonce(bytes_of(c.nonce));
          out.setMac(bytes_of(c.mac));
          out.setListenHost(c.listen_host);
          out.setHostname(c.hostname);
          out.setProtection(c.protection);
        } else if constexpr (std::is_same_v<T, Welcome>) {
          auto out = frame.initWelcome();
          out.setRank(c.rank);
          out.setMac(bytes_of(c.mac));
          out.setProtection(c.protection);
        } else if constexpr (std::is_same_v<T, Reject>) {
          frame.setReject(c.reason);
        } else if constexpr (std::is_same_v<T, Roster>) {
          auto out = frame.initRoster();
          auto ports = out.initPorts(static_cast<unsigned>(c.ports.size()));
          for (std::size_t i = 0; i < c.ports.size(); ++i) ports.set(static_cast<unsigned>(i), c.ports[i]);
          auto hosts = out.initHosts(static_cast<unsigned>(c.hosts.size()));
          for (std::size_t i = 0; i < c.hosts.size(); ++i) hosts.set(static_cast<unsigned>(i), c.hosts[i]);
          auto names = out.initHostnames(static_cast<unsigned>(c.hostnames.size()));
          for (std::size_t i = 0; i < c.hostnames.size(); ++i) names.set(static_cast<unsigned>(i), c.hostnames[i]);
        }
      },
      control);
  impl->finish();
  return OutFrame(std::move(impl));
}

OutFrame encode_chunk(const ChunkHeader& header, std::unique_ptr<std::uint64_t[]> storage, std::size_t payload_bytes) {
  TROUPE_CHECK(payload_bytes <= kMaxChunkBytes, "chunk of ", payload_bytes, " bytes");
  TROUPE_CHECK(payload_bytes == 0 || storage != nullptr, "chunk without storage");
  auto impl = std::make_unique<OutFrame::Impl>();
  impl->storage = std::move(storage);
  auto chunk = impl->builder.initRoot<schema::Frame>().initChunk();
  chunk.setTag(header.tag);
  chunk.setIndex(header.index);
  chunk.setTotalBytes(header.total_bytes);
  chunk.setOffset(header.offset);
  if (payload_bytes > 0) {
    // By reference: the storage becomes the message's last segment, written as it is.
    auto data = capnp::Data::Reader(reinterpret_cast<const kj::byte*>(impl->storage.get()), payload_bytes);
    chunk.adoptPayload(impl->builder.getOrphanage().referenceExternalData(data));
  }
  impl->finish();
  return OutFrame(std::move(impl));
}

OutFrame encode_chunk_header(const ChunkHeader& header, std::size_t payload_bytes) {
  TROUPE_CHECK(payload_bytes > 0 && payload_bytes <= kMaxChunkBytes, "chunk of ", payload_bytes, " bytes");
  // Cap'n Proto lays out the pointers to an external segment from its address and size alone and
  // never reads it while building or listing segments; the placeholder only has to be aligned. Its
  // piece (the last) is then dropped: the caller writes the real bytes in its place.
  alignas(8) static const std::uint64_t placeholder = 0;
  auto impl = std::make_unique<OutFrame::Impl>();
  auto chunk = impl->builder.initRoot<schema::Frame>().initChunk();
  chunk.setTag(header.tag);
  chunk.setIndex(header.index);
  chunk.setTotalBytes(header.total_bytes);
  chunk.setOffset(header.offset);
  auto data = capnp::Data::Reader(reinterpret_cast<const kj::byte*>(&placeholder), payload_bytes);
  chunk.adoptPayload(impl->builder.getOrphanage().referenceExternalData(data));
  impl->finish();
  impl->bytes -= impl->pieces.back().size();
  impl->pieces.pop_back();
  return OutFrame(std::move(impl));
}

// ---------------------------------------------------------------------------------------------
// Reading

struct FrameReader::Impl {
  // Plain 64-bit words, viewed as capnp::word only when handed to Cap'n Proto: with clang,
  // capnp::word is not copyable, so a std::vector of it does not compile.
  std::vector<std::uint64_t> head;     // every segment but the last (or the only one)
  std::vector<std::uint64_t> scratch;  // the last segment, when the caller did not place it
  std::vector<std::uint32_t> sizes;  // words per segment
  std::vector<kj::ArrayPtr<const capnp::word>> segments;

  // The traversal limit is raised deliberately: capnp's default (8 Mi words = 64 MiB) would
  // refuse a legitimate chunk near kMaxChunkBytes. Each frame is decoded once, so a limit of the
  // frame's own size (plus room for the small structs) still stops a crafted message whose
  // pointers alias one another from being traversed more than about once.
  static capnp::ReaderOptions options(std::size_t words) {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = words + 1024;
    o.nestingLimit = 8;
    return o;
  }
};

FrameReader::FrameReader() : impl_(std::make_unique<Impl>()) {}
FrameReader::~FrameReader() = default;

namespace {

ChunkHeader chunk_header(schema::Chunk::Reader c) {
  return ChunkHeader{c.getTag(), c.getIndex(), c.getTotalBytes(), c.getOffset()};
}

Control control_of(schema::Frame::Reader frame) {
  switch (frame.which()) {
    case schema::Frame::GOODBYE:
      return Goodbye{};
    case schema::Frame::FAREWELL:
      return Goodbye{std::string(frame.getFarewell().cStr())};
    case schema::Frame::CHALLENGE: {
      auto c = frame.getChallenge();
      return Challenge{c.getRank(), fixed32(c.getNonce(), "challenge nonce")};
    }
    case schema::Frame::HELLO: {
      auto h = frame.getHello();
      return Hello{h.getRank(), h.getSize(), h.getListenPort(), fixed32(h.getNonce(), "hello nonce"),
                   fixed32(h.getMac(), "hello MAC"), h.getListenHost(), std::string(h.getHostname().cStr()), h.getProtection()};
    }
    case schema::Frame::WELCOME: {
      auto w = frame.getWelcome();
      return Welcome{w.getRank(), fixed32(w.getMac(), "welcome MAC"), w.getProtection()};
    }
    case schema::Frame::REJECT:
      return Reject{std::string(frame.getReject().cStr())};
    case schema::Frame::ROSTER: {
      Roster r;
      const auto roster = frame.getRoster();
      for (auto port : roster.getPorts()) r.ports.push_back(port);
      for (auto host : roster.getHosts()) r.hosts.push_back(host);
      for (auto name : roster.getHostnames()) r.hostnames.emplace_back(name.cStr());
      return r;
    }
    case schema::Frame::CHUNK:
      break;
  }
  malformed(detail::concat("unknown frame kind ", static_cast<int>(frame.which())));
}

}  // namespace

InFrame FrameReader::read(const ReadExact& read_exact, const Place& place, const HeaderRead& on_header) {
  Impl& s = *impl_;

  // Preamble and the first word of the segment table; then the rest of the table after them, so
  // the whole header lies in one piece for on_header.
  alignas(8) std::array<std::uint32_t, 2 + (kMaxSegments + 2) / 2 * 2> header{};
  const std::span<std::uint32_t, 4> prefix = std::span(header).first<4>();
  read_exact(std::as_writable_bytes(prefix));
  if (prefix[0] != kMagic) {
    malformed(detail::concat("bad magic 0x", std::hex, prefix[0], " (expected 0x", kMagic,
                             "): not a troupe frame, or the stream lost its place"));
  }
  const std::uint32_t version = prefix[1] & 0xFFFF;
  if (version != kVersion || (prefix[1] >> 16) != 0) {
    malformed(detail::concat("unsupported frame version ", version, " (this troupe speaks version ", kVersion,
                             "); every rank must run the same troupe build"));
  }
  const std::uint64_t count = std::uint64_t{prefix[2]} + 1;
  if (count > kMaxSegments) {
    malformed(detail::concat("frame has ", count, " segments; the limit is ", kMaxSegments));
  }

  // The rest of the segment table.
  s.sizes.assign(static_cast<std::size_t>(count), 0);
  s.sizes[0] = prefix[3];
  const std::size_t table_bytes = round_up8(4 * (count + 1));
  if (table_bytes > 8) {
    const auto rest = std::span(header).subspan(4);
    read_exact(std::as_writable_bytes(rest).first(table_bytes - 8));
    for (std::size_t i = 1; i < count; ++i) s.sizes[i] = rest[i - 1];
  }
  if (on_header) on_header(std::as_bytes(std::span(header)).first(8 + table_bytes));
  const std::size_t head_count = count == 1 ? 1 : count - 1;
  std::uint64_t head_words = 0;
  for (std::size_t i = 0; i < head_count; ++i) head_words += s.sizes[i];
  const std::uint64_t tail_words = count == 1 ? 0 : s.sizes.back();
  if (head_words * 8 > kMaxHeadBytes) {
    malformed(detail::concat("frame header of ", head_words * 8, " bytes exceeds the limit of ", kMaxHeadBytes, " bytes"));
  }
  if (tail_words * 8 > kMaxChunkBytes + 8) {
    malformed(detail::concat("frame of ", tail_words * 8, " payload bytes exceeds the limit of ", kMaxChunkBytes,
                             " bytes per chunk"));
  }
  if (head_words == 0) malformed("frame has an empty first segment");

  s.head.resize(static_cast<std::size_t>(head_words));
  read_exact(std::as_writable_bytes(std::span(s.head)));
  s.segments.clear();
  std::size_t at = 0;
  for (std::size_t i = 0; i < head_count; ++i) {
    s.segments.emplace_back(words_of(s.head.data() + at), s.sizes[i]);
    at += s.sizes[i];
  }

  try {
    // The head alone: enough for the root struct's kind and a chunk's scalar fields, which never
    // point into the last segment.
    ChunkHeader header;
    bool is_chunk = false;
    {
      capnp::SegmentArrayMessageReader head_reader(kj::arrayPtr(s.segments.data(), s.segments.size()),
                                                   Impl::options(static_cast<std::size_t>(head_words)));
      auto frame = head_reader.getRoot<schema::Frame>();
      is_chunk = frame.which() == schema::Frame::CHUNK;
      if (is_chunk) header = chunk_header(frame.getChunk());
      if (!is_chunk && tail_words == 0) return control_of(frame);
    }

    if (!is_chunk) {  // a control frame with a second segment: read whole, then decoded
      const std::size_t tail_bytes = static_cast<std::size_t>(tail_words) * 8;
      s.scratch.resize(static_cast<std::size_t>(tail_words));
      read_exact(std::as_writable_bytes(std::span(s.scratch)).first(tail_bytes));
      s.segments.emplace_back(words_of(s.scratch.data()), s.scratch.size());
      capnp::SegmentArrayMessageReader reader(kj::arrayPtr(s.segments.data(), s.segments.size()),
                                              Impl::options(static_cast<std::size_t>(head_words + tail_words)));
      return control_of(reader.getRoot<schema::Frame>());
    }

    // A chunk is decoded whole before its payload segment is read, with that segment standing in as
    // zeros (Cap'n Proto never reads a Data's bytes, and the frame's pointers may only find zeros
    // there): so the payload read is the frame's last step, nothing after it can fail, and whoever
    // the caller lets read it (net/tcp: the rank's own thread) gets bytes from a frame known good.
    const std::size_t tail_bytes = static_cast<std::size_t>(tail_words) * 8;
    const std::byte* zeros = tail_words > 0 ? zero_segment(tail_bytes) : nullptr;
    if (tail_words > 0) s.segments.emplace_back(reinterpret_cast<const capnp::word*>(zeros), static_cast<std::size_t>(tail_words));
    capnp::SegmentArrayMessageReader reader(kj::arrayPtr(s.segments.data(), s.segments.size()),
                                            Impl::options(static_cast<std::size_t>(head_words + tail_words)));
    auto payload = reader.getRoot<schema::Frame>().getChunk().getPayload();
    const auto* begin = reinterpret_cast<const std::byte*>(payload.begin());
    const bool in_tail = tail_words > 0 && begin >= zeros && begin < zeros + tail_bytes;
    if (tail_words == 0) return InChunk{header, std::span<const std::byte>(begin, payload.size())};

    // The last segment: in place when the caller says where (only a payload that is that whole
    // segment, but for the padding of a last word, can be placed), else into scratch.
    const bool whole_segment = begin == zeros && payload.size() + 8 > tail_bytes;
    std::byte* placed = whole_segment ? place(header, tail_bytes) : nullptr;
    if (placed) {
      TROUPE_CHECK(reinterpret_cast<std::uintptr_t>(placed) % 8 == 0, "placed payload is not 8-byte aligned");
      read_exact(std::span(placed, tail_bytes));
      return InChunk{header, std::span<const std::byte>(placed, payload.size())};
    }
    s.scratch.resize(static_cast<std::size_t>(tail_words));
    auto* scratch = reinterpret_cast<std::byte*>(s.scratch.data());
    read_exact(std::span(scratch, tail_bytes));
    // The bytes stay valid in the scratch (or the head) after the reader goes.
    return InChunk{header, std::span<const std::byte>(in_tail ? scratch + (begin - zeros) : begin, payload.size())};
  } catch (const kj::Exception& e) {
    malformed(detail::concat("Cap'n Proto could not decode the frame: ", e.getDescription().cStr()));
  }
}

}  // namespace troupe::net::wire
