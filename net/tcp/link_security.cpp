// Owns the link protection's key derivation (HKDF-SHA256) and frame sealing (AES-256-GCM), both through OpenSSL's libcrypto.
#include "net/tcp/link_security.h"

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>

#include <algorithm>
#include <climits>
#include <string>

#include "runtime/error.h"

namespace troupe::net::tcp {

namespace {

constexpr std::size_t kIvBytes = 12;

[[noreturn]] void openssl_failed(const char* what) {
  throw Error(ErrorKind::kInternal, detail::concat("OpenSSL failed to ", what, " (link security, net/tcp/link_security.cpp)"));
}

// What a GCM nonce is for: a frame's seal or its header's tag, both under the frame's sequence number
// and the direction's key, so the two domains must never share a nonce.
enum class NonceDomain : unsigned char { frame = 0, header = 1 };

// GCM's nonce: the frame's sequence number, little-endian, then the domain byte, then zeros. Never
// repeats under one key: keys are per direction and per connection, and a link ends long before 2^64 frames.
std::array<unsigned char, kIvBytes> iv_of(std::uint64_t sequence, NonceDomain domain = NonceDomain::frame) {
  std::array<unsigned char, kIvBytes> iv{};
  for (int b = 0; b < 8; ++b) iv[static_cast<std::size_t>(b)] = static_cast<unsigned char>(sequence >> (8 * b));
  iv[8] = static_cast<unsigned char>(domain);
  return iv;
}

// EVP takes int lengths: a frame's piece can be up to 64 MiB, so this feeds it in slices regardless.
template <class F>
void in_slices(std::size_t n, F&& f) {
  constexpr std::size_t kSlice = std::size_t{1} << 30;
  for (std::size_t at = 0; at < n; at += kSlice) f(at, static_cast<int>(std::min(kSlice, n - at)));
}

// A frame header's tag: GMAC (GCM with the header as additional data and nothing to encrypt) under
// the header domain's nonce, truncated to 8 bytes (NIST SP 800-38D allows 64-bit tags). `ctx` is an
// AES-256-GCM encryption context holding the direction's key; both ends compute it this way.
HeaderTag header_gmac(EVP_CIPHER_CTX* ctx, std::uint64_t sequence, std::span<const std::byte> header) {
  const auto iv = iv_of(sequence, NonceDomain::header);
  unsigned char rest[16];
  int out = 0;
  std::array<std::byte, 16> full{};
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) <= 0 ||
      EVP_EncryptUpdate(ctx, nullptr, &out, reinterpret_cast<const unsigned char*>(header.data()), static_cast<int>(header.size())) <= 0 ||
      EVP_EncryptFinal_ex(ctx, rest, &out) <= 0 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(full.size()), full.data()) <= 0) {
    openssl_failed("tag a frame's header");
  }
  HeaderTag tag{};
  std::copy_n(full.begin(), kHeaderTagBytes, tag.begin());
  return tag;
}

SessionKey hkdf(std::string_view secret, const wire::Nonce& acceptor_nonce, const wire::Nonce& connector_nonce,
                const std::string& info) {
  unsigned char salt[64];
  std::copy(acceptor_nonce.begin(), acceptor_nonce.end(), salt);
  std::copy(connector_nonce.begin(), connector_nonce.end(), salt + 32);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  if (!ctx) openssl_failed("create an HKDF context");
  SessionKey key{};
  std::size_t length = key.size();
  const bool ok = EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) > 0 &&
                  EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt, sizeof salt) > 0 &&
                  EVP_PKEY_CTX_set1_hkdf_key(ctx, reinterpret_cast<const unsigned char*>(secret.data()),
                                             static_cast<int>(secret.size())) > 0 &&
                  EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const unsigned char*>(info.data()),
                                              static_cast<int>(info.size())) > 0 &&
                  EVP_PKEY_derive(ctx, key.data(), &length) > 0 && length == key.size();
  EVP_PKEY_CTX_free(ctx);
  if (!ok) openssl_failed("derive a link key with HKDF-SHA256");
  return key;
}

}  // namespace

const char* protection_name(Protection level) {
  switch (level) {
    case Protection::off: return "off";
    case Protection::integrity: return "integrity";
    case Protection::encrypt: return "encrypt";
  }
  return "?";
}

Protection wanted_protection(IntegrityPolicy integrity, bool encrypt, bool loopback_peer) {
  if (encrypt) return Protection::encrypt;
  switch (integrity) {
    case IntegrityPolicy::on: return Protection::integrity;
    case IntegrityPolicy::off: return Protection::off;
    case IntegrityPolicy::automatic: return loopback_peer ? Protection::off : Protection::integrity;
  }
  return Protection::integrity;
}

Protection agreed_protection(Protection a, Protection b) { return std::max(a, b); }

std::optional<Protection> protection_from_wire(std::uint8_t value) {
  if (value > static_cast<std::uint8_t>(Protection::encrypt)) return std::nullopt;
  return static_cast<Protection>(value);
}

LinkKeys derive_link_keys(std::string_view secret, const wire::Nonce& acceptor_nonce, const wire::Nonce& connector_nonce,
                          int acceptor_rank, int connector_rank, Protection level, bool as_acceptor) {
  const std::string tail = detail::concat(" acceptor rank ", acceptor_rank, " connector rank ", connector_rank, " level ",
                                          protection_name(level));
  const SessionKey from_acceptor = hkdf(secret, acceptor_nonce, connector_nonce, "troupe-link acceptor->connector" + tail);
  const SessionKey from_connector = hkdf(secret, acceptor_nonce, connector_nonce, "troupe-link connector->acceptor" + tail);
  return as_acceptor ? LinkKeys{from_acceptor, from_connector} : LinkKeys{from_connector, from_acceptor};
}

// --- sealing -----------------------------------------------------------------------------------

struct FrameSealer::Cipher {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~Cipher() { EVP_CIPHER_CTX_free(ctx); }
};

FrameSealer::FrameSealer(Protection level, const SessionKey& key)
    : level_(level), cipher_(std::make_unique<Cipher>()), header_cipher_(std::make_unique<Cipher>()) {
  TROUPE_CHECK(level != Protection::off, "a sealer for an unprotected link");
  for (const auto* c : {cipher_.get(), header_cipher_.get()}) {
    if (!c->ctx || EVP_EncryptInit_ex(c->ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr) <= 0) {
      openssl_failed("set up AES-256-GCM");
    }
  }
}

FrameSealer::~FrameSealer() = default;

void FrameSealer::begin() {
  const auto iv = iv_of(sequence_);
  if (EVP_EncryptInit_ex(cipher_->ctx, nullptr, nullptr, nullptr, iv.data()) <= 0) openssl_failed("start a frame's seal");
}

void FrameSealer::authenticate(std::span<const std::byte> bytes) {
  in_slices(bytes.size(), [&](std::size_t at, int n) {
    int out = 0;
    if (EVP_EncryptUpdate(cipher_->ctx, nullptr, &out, reinterpret_cast<const unsigned char*>(bytes.data() + at), n) <= 0) {
      openssl_failed("authenticate a frame");
    }
  });
}

void FrameSealer::encrypt(std::span<const std::byte> in, std::span<std::byte> out) {
  TROUPE_CHECK(level_ == Protection::encrypt && in.size() == out.size(), "encrypt at level ", protection_name(level_));
  in_slices(in.size(), [&](std::size_t at, int n) {
    int written = 0;
    if (EVP_EncryptUpdate(cipher_->ctx, reinterpret_cast<unsigned char*>(out.data() + at), &written,
                          reinterpret_cast<const unsigned char*>(in.data() + at), n) <= 0 ||
        written != n) {
      openssl_failed("encrypt a frame");
    }
  });
}

Seal FrameSealer::finish() {
  unsigned char rest[16];
  int out = 0;
  Seal seal{};
  if (EVP_EncryptFinal_ex(cipher_->ctx, rest, &out) <= 0 ||
      EVP_CIPHER_CTX_ctrl(cipher_->ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kSealBytes), seal.data()) <= 0) {
    openssl_failed("finish a frame's seal");
  }
  ++sequence_;
  return seal;
}

HeaderTag FrameSealer::header_tag(std::span<const std::byte> header) {
  return header_gmac(header_cipher_->ctx, sequence_, header);
}

// --- opening -----------------------------------------------------------------------------------

struct FrameOpener::Cipher {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~Cipher() { EVP_CIPHER_CTX_free(ctx); }
};

FrameOpener::FrameOpener(Protection level, const SessionKey& key)
    : level_(level), cipher_(std::make_unique<Cipher>()), header_cipher_(std::make_unique<Cipher>()) {
  TROUPE_CHECK(level != Protection::off, "an opener for an unprotected link");
  if (!cipher_->ctx || EVP_DecryptInit_ex(cipher_->ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr) <= 0) {
    openssl_failed("set up AES-256-GCM");
  }
  // The header tag is recomputed as the sender made it and compared: an encryption context.
  if (!header_cipher_->ctx || EVP_EncryptInit_ex(header_cipher_->ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr) <= 0) {
    openssl_failed("set up AES-256-GCM");
  }
}

FrameOpener::~FrameOpener() = default;

void FrameOpener::begin() {
  const auto iv = iv_of(sequence_);
  if (EVP_DecryptInit_ex(cipher_->ctx, nullptr, nullptr, nullptr, iv.data()) <= 0) openssl_failed("start opening a frame");
}

void FrameOpener::authenticate(std::span<const std::byte> bytes) {
  in_slices(bytes.size(), [&](std::size_t at, int n) {
    int out = 0;
    if (EVP_DecryptUpdate(cipher_->ctx, nullptr, &out, reinterpret_cast<const unsigned char*>(bytes.data() + at), n) <= 0) {
      openssl_failed("authenticate a frame");
    }
  });
}

void FrameOpener::decrypt(std::span<std::byte> in_place) {
  TROUPE_CHECK(level_ == Protection::encrypt, "decrypt at level ", protection_name(level_));
  in_slices(in_place.size(), [&](std::size_t at, int n) {
    auto* p = reinterpret_cast<unsigned char*>(in_place.data() + at);
    int written = 0;
    if (EVP_DecryptUpdate(cipher_->ctx, p, &written, p, n) <= 0 || written != n) openssl_failed("decrypt a frame");
  });
}

bool FrameOpener::finish(const Seal& seal) {
  ++sequence_;
  Seal expected = seal;  // EVP takes a non-const pointer
  if (EVP_CIPHER_CTX_ctrl(cipher_->ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kSealBytes), expected.data()) <= 0) {
    openssl_failed("check a frame's seal");
  }
  unsigned char rest[16];
  int out = 0;
  return EVP_DecryptFinal_ex(cipher_->ctx, rest, &out) > 0;
}

bool FrameOpener::header_matches(std::span<const std::byte> header, const HeaderTag& tag) {
  const HeaderTag expected = header_gmac(header_cipher_->ctx, sequence_, header);
  return CRYPTO_memcmp(expected.data(), tag.data(), kHeaderTagBytes) == 0;  // constant time
}

}  // namespace troupe::net::tcp
