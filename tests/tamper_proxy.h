// Owns a test-only TCP forwarder that sits between two ranks on loopback and can change, inject, replay, reorder or drop one frame of a link after the handshake.
//
// It accepts one connection (the connector, a rank with a higher number) and forwards it to the
// acceptor's port. Bytes from the acceptor go back as they are; bytes from the connector are cut
// into frames (net/wire/frame_codec.h: preamble, segment table, segments; on a protected link the 8-byte
// header tag after the table and the 16-byte seal at the end), the first being the handshake's hello. Data frames after it are numbered from 0,
// and frame `at` is tampered with as asked. Every byte the connector sent is recorded, so a test can
// also look at what crossed the wire.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "net/wire/frame_codec.h"

namespace troupe::testing {

// flip: one bit of the frame's body; length: its last segment's length in the segment table, made
// longer, so a receiver that trusted it would wait for bytes that never come.
enum class Tamper { none, flip, length, inject, replay, reorder, drop };

class TamperProxy {
 public:
  // `sealed`: the link is protected, so each data frame is followed by its seal.
  TamperProxy(int to_port, Tamper tamper, int at, bool sealed) : to_port_(to_port), tamper_(tamper), at_(at), sealed_(sealed) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(0);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 4) != 0) {
      throw std::runtime_error("tamper proxy: cannot listen");
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TamperProxy() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }
  TamperProxy(const TamperProxy&) = delete;
  TamperProxy& operator=(const TamperProxy&) = delete;

  int port() const { return port_; }
  // Every byte the connector sent, as it sent it.
  std::vector<std::byte> from_connector() {
    std::lock_guard lock(mu_);
    return recorded_;
  }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    return a;
  }
  static bool read_all(int fd, std::byte* out, std::size_t n) {
    for (std::size_t done = 0; done < n;) {
      const ssize_t r = ::read(fd, out + done, n - done);
      if (r <= 0) return false;
      done += static_cast<std::size_t>(r);
    }
    return true;
  }
  static void write_all(int fd, const std::vector<std::byte>& bytes) {
    for (std::size_t done = 0; done < bytes.size();) {
      const ssize_t w = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (w <= 0) return;
      done += static_cast<std::size_t>(w);
    }
  }
  // One frame (and its header tag and seal, if `with_seal`); empty at the end of the stream.
  std::vector<std::byte> read_frame(int fd, bool with_seal) {
    std::vector<std::byte> f(16);
    if (!read_all(fd, f.data(), 16)) return {};
    std::uint32_t prefix[4];
    std::memcpy(prefix, f.data(), 16);
    const std::size_t count = std::size_t{prefix[2]} + 1;
    if (prefix[0] != net::wire::kMagic || count > net::wire::kMaxSegments) return {};
    const std::size_t table = (4 * (count + 1) + 7) / 8 * 8;
    f.resize(8 + table);
    if (table > 8 && !read_all(fd, f.data() + 16, table - 8)) return {};
    std::size_t words = 0;
    for (std::size_t i = 0; i < count; ++i) {
      std::uint32_t w;
      std::memcpy(&w, f.data() + 12 + 4 * i, 4);
      words += w;
    }
    const std::size_t head = f.size();
    f.resize(head + (with_seal ? 8 : 0) + words * 8 + (with_seal ? 16 : 0));
    if (!read_all(fd, f.data() + head, f.size() - head)) return {};
    return f;
  }

  void run() {
    const int in = ::accept(listen_fd_, nullptr, nullptr);
    if (in < 0) return;
    const int out = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(to_port_);
    if (::connect(out, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(in);
      ::close(out);
      return;
    }
    // Acceptor -> connector: as it is.
    std::thread back([in, out] {
      std::vector<std::byte> buffer(1 << 16);
      while (true) {
        const ssize_t n = ::read(out, buffer.data(), buffer.size());
        if (n <= 0) break;
        write_all(in, std::vector<std::byte>(buffer.begin(), buffer.begin() + n));
      }
      ::shutdown(in, SHUT_RDWR);
    });
    // Connector -> acceptor: frame by frame.
    std::vector<std::byte> held, previous;
    for (int index = -1;; ++index) {  // -1: the hello
      std::vector<std::byte> f = read_frame(in, sealed_ && index >= 0);
      if (f.empty()) break;
      {
        std::lock_guard lock(mu_);
        recorded_.insert(recorded_.end(), f.begin(), f.end());
      }
      if (index == at_) {
        switch (tamper_) {
          case Tamper::none: break;
          case Tamper::flip: f[f.size() / 2] ^= std::byte{0x01}; break;
          case Tamper::length: {  // the segment table's last entry (preamble 8 bytes, count 4, sizes 4 each)
            std::uint32_t last, words;  // segments - 1 is the index of the last one
            std::memcpy(&last, f.data() + 8, 4);
            std::memcpy(&words, f.data() + 12 + 4 * last, 4);
            words += 100000;  // 800 KB: more than the rest of a test's frames, less than any limit
            std::memcpy(f.data() + 12 + 4 * last, &words, 4);
            break;
          }
          case Tamper::inject: {  // a well-formed chunk of its own making, with a made-up seal
            std::vector<std::byte> fake;
            const auto chunk = net::wire::encode_chunk(net::wire::ChunkHeader{1, 0, 8, 0},
                                                       std::unique_ptr<std::uint64_t[]>(new std::uint64_t[1]{0}), 8);
            for (const auto& p : chunk.pieces()) fake.insert(fake.end(), p.begin(), p.end());
            if (sealed_) {  // a made-up header tag after the header (the first piece) and seal at the end
              fake.insert(fake.begin() + static_cast<std::ptrdiff_t>(chunk.pieces().front().size()), 8, std::byte{0x42});
              fake.resize(fake.size() + 16, std::byte{0x42});
            }
            write_all(out, fake);
            break;
          }
          case Tamper::replay: write_all(out, previous); break;
          case Tamper::reorder: held = f; f.clear(); break;
          case Tamper::drop: f.clear(); break;
        }
      }
      write_all(out, f);
      if (index == at_ + 1 && !held.empty()) write_all(out, held);
      previous = f;
    }
    ::shutdown(out, SHUT_RDWR);
    back.join();
    ::close(in);
    ::close(out);
  }

  int to_port_;
  Tamper tamper_;
  int at_;
  bool sealed_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::byte> recorded_;
};

}  // namespace troupe::testing
