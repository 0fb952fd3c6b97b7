// Owns the TCP transport's authentication: SHA-256, HMAC-SHA256, nonces and the two handshake MACs that prove a peer knows the job's secret.
//
// Challenge-response, mutual (net/tcp/rendezvous.h runs it): the acceptor sends a fresh nonce
// Na; the connector answers with its own nonce Nc and hello_mac = HMAC(secret, "troupe-hello" |
// Na | Nc | rank | size); the acceptor checks it and answers welcome_mac = HMAC(secret,
// "troupe-welcome" | Nc | Na | its rank), which the connector checks. The secret itself never
// crosses the wire, and both nonces are fresh per connection, so a recorded handshake cannot be
// replayed. Frames after the handshake are protected by net/tcp/link_security.h, with keys derived
// from the secret and both nonces.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "net/wire/frame_codec.h"

namespace troupe::net::tcp {

using Digest = std::array<std::uint8_t, 32>;

// FIPS 180-4 SHA-256 of `data`.
Digest sha256(std::span<const std::byte> data);

// RFC 2104 HMAC with SHA-256.
Digest hmac_sha256(std::string_view key, std::span<const std::byte> message);

// 32 bytes from the operating system's random source (std::random_device, /dev/urandom on Linux).
wire::Nonce fresh_nonce();

wire::Mac hello_mac(std::string_view secret, const wire::Nonce& acceptor_nonce, const wire::Nonce& connector_nonce,
                    int rank, int size);
wire::Mac welcome_mac(std::string_view secret, const wire::Nonce& connector_nonce, const wire::Nonce& acceptor_nonce,
                      int rank);

// Compares without an early exit, so the time taken does not reveal how much of a MAC matched.
bool macs_equal(const wire::Mac& a, const wire::Mac& b);

}  // namespace troupe::net::tcp
