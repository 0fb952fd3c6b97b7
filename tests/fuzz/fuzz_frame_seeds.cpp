// Writes the frame decoder's seed corpus: one file per valid frame (or stream of frames) of every kind, made by the real encoder.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "net/wire/frame_codec.h"

namespace {

using namespace troupe::net::wire;

void append(std::string& out, const OutFrame& frame) {
  for (const auto& piece : frame.pieces()) out.append(reinterpret_cast<const char*>(piece.data()), piece.size());
}

OutFrame chunk(std::uint32_t tag, std::uint32_t index, std::size_t payload_bytes) {
  auto storage = std::make_unique<std::uint64_t[]>((payload_bytes + 7) / 8);
  auto* bytes = reinterpret_cast<unsigned char*>(storage.get());
  for (std::size_t i = 0; i < payload_bytes; ++i) bytes[i] = static_cast<unsigned char>(i * 31 + 7);
  return encode_chunk(ChunkHeader{tag, index, payload_bytes * 3, payload_bytes * index}, std::move(storage), payload_bytes);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY  (writes the seed frames into DIRECTORY, which must exist)\n", argv[0]);
    return 2;
  }
  Nonce nonce{};
  Mac mac{};
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::uint8_t>(i), mac[i] = static_cast<std::uint8_t>(255 - i);
  std::vector<std::pair<std::string, std::string>> seeds;
  auto add = [&](const std::string& name, const OutFrame& frame) {
    std::string bytes;
    append(bytes, frame);
    seeds.emplace_back(name, bytes);
  };
  add("goodbye", encode(Goodbye{}));
  add("farewell", encode(Goodbye{"rank 2 (on host node-b) is dead"}));
  add("challenge", encode(Challenge{3, nonce}));
  add("hello", encode(Hello{1, 4, 40123, nonce, mac, 0x7F000001, "node-a"}));
  add("welcome", encode(Welcome{0, mac}));
  add("reject", encode(Reject{"rank 5 is already connected"}));
  add("roster", encode(Roster{{40000, 40001, 40002}, {0x7F000001, 0x7F000001, 0}, {"a", "bb", ""}}));
  add("chunk_empty", chunk(1, 0, 0));
  add("chunk_13", chunk(2, 1, 13));
  add("chunk_256", chunk(3, 2, 256));
  {  // a header written apart from its payload, as a sender writing from its own memory does
    std::string bytes;
    append(bytes, encode_chunk_header(ChunkHeader{4, 0, 21, 0}, 21));
    for (int i = 0; i < 21; ++i) bytes.push_back(static_cast<char>(i));
    bytes.append(payload_padding(21), '\0');
    seeds.emplace_back("chunk_header_21", bytes);
  }
  {  // a link's stream: a message in two chunks, then goodbye
    std::string bytes;
    append(bytes, chunk(5, 0, 40));
    append(bytes, chunk(5, 1, 24));
    append(bytes, encode(Goodbye{}));
    seeds.emplace_back("stream", bytes);
  }
  for (const auto& [name, bytes] : seeds) {
    const std::string path = std::string(argv[1]) + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s: %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
  }
  std::printf("wrote %zu seed frames to %s\n", seeds.size(), argv[1]);
  return 0;
}
