// Owns SHA-256 and HMAC-SHA256 (a small, dependency-free implementation) and the handshake MACs built from them.
#include "net/tcp/auth.h"

#include <cstring>
#include <random>
#include <vector>

namespace troupe::net::tcp {

namespace {

constexpr std::uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void compress(std::uint32_t state[8], const std::uint8_t block[64]) {
  std::uint32_t w[64];
  for (int i = 0; i < 16; ++i) {
    w[i] = (std::uint32_t{block[4 * i]} << 24) | (std::uint32_t{block[4 * i + 1]} << 16) |
           (std::uint32_t{block[4 * i + 2]} << 8) | std::uint32_t{block[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  std::uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6],
                h = state[7];
  for (int i = 0; i < 64; ++i) {
    const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
    const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  state[0] += a, state[1] += b, state[2] += c, state[3] += d, state[4] += e, state[5] += f, state[6] += g, state[7] += h;
}

void append(std::vector<std::byte>& out, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::byte*>(data);
  out.insert(out.end(), p, p + n);
}

void append_i32(std::vector<std::byte>& out, int v) {
  const auto u = static_cast<std::uint32_t>(v);
  const std::uint8_t le[4] = {std::uint8_t(u), std::uint8_t(u >> 8), std::uint8_t(u >> 16), std::uint8_t(u >> 24)};
  append(out, le, 4);
}

}  // namespace

Digest sha256(std::span<const std::byte> data) {
  std::uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  const std::size_t n = data.size();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) compress(state, p + i);
  // The last partial block, the 0x80 terminator and the bit length, in one or two blocks.
  std::uint8_t tail[128] = {};
  const std::size_t rest = n - i;
  if (rest) std::memcpy(tail, p + i, rest);
  tail[rest] = 0x80;
  const std::size_t blocks = rest + 9 <= 64 ? 1 : 2;
  const std::uint64_t bits = static_cast<std::uint64_t>(n) * 8;
  for (int b = 0; b < 8; ++b) tail[blocks * 64 - 1 - b] = static_cast<std::uint8_t>(bits >> (8 * b));
  for (std::size_t b = 0; b < blocks; ++b) compress(state, tail + 64 * b);
  Digest out;
  for (int k = 0; k < 8; ++k) {
    for (int b = 0; b < 4; ++b) out[4 * k + b] = static_cast<std::uint8_t>(state[k] >> (24 - 8 * b));
  }
  return out;
}

Digest hmac_sha256(std::string_view key, std::span<const std::byte> message) {
  std::uint8_t block[64] = {};
  if (key.size() > 64) {
    const Digest k = sha256(std::as_bytes(std::span(key.data(), key.size())));
    std::memcpy(block, k.data(), k.size());
  } else if (!key.empty()) {
    std::memcpy(block, key.data(), key.size());
  }
  std::vector<std::byte> inner, outer;
  inner.reserve(64 + message.size());
  for (auto b : block) inner.push_back(std::byte(b ^ 0x36));
  inner.insert(inner.end(), message.begin(), message.end());
  const Digest inner_digest = sha256(inner);
  for (auto b : block) outer.push_back(std::byte(b ^ 0x5c));
  append(outer, inner_digest.data(), inner_digest.size());
  return sha256(outer);
}

wire::Nonce fresh_nonce() {
  std::random_device device;
  wire::Nonce nonce;
  for (std::size_t i = 0; i < nonce.size(); i += 4) {
    const std::uint32_t r = device();
    for (int b = 0; b < 4; ++b) nonce[i + b] = static_cast<std::uint8_t>(r >> (8 * b));
  }
  return nonce;
}

wire::Mac hello_mac(std::string_view secret, const wire::Nonce& acceptor_nonce, const wire::Nonce& connector_nonce,
                    int rank, int size) {
  std::vector<std::byte> m;
  append(m, "troupe-hello", 12);
  append(m, acceptor_nonce.data(), acceptor_nonce.size());
  append(m, connector_nonce.data(), connector_nonce.size());
  append_i32(m, rank);
  append_i32(m, size);
  return hmac_sha256(secret, m);
}

wire::Mac welcome_mac(std::string_view secret, const wire::Nonce& connector_nonce, const wire::Nonce& acceptor_nonce,
                      int rank) {
  std::vector<std::byte> m;
  append(m, "troupe-welcome", 14);
  append(m, connector_nonce.data(), connector_nonce.size());
  append(m, acceptor_nonce.data(), acceptor_nonce.size());
  append_i32(m, rank);
  return hmac_sha256(secret, m);
}

bool macs_equal(const wire::Mac& a, const wire::Mac& b) {
  std::uint8_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<std::uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace troupe::net::tcp
