// Owns the benchmark of a TCP link's per-frame protection work (net/tcp/link_security.h): sealing and opening 1 MiB frames at integrity and encrypt, beside a memcpy of the same bytes, and a frame header's tag, in CPU time.
//
// Why CPU time: the cost that matters is the CPU a rank spends per byte on top of the copy the kernel
// makes anyway, and thread CPU time (CLOCK_THREAD_CPUTIME_ID) measures it even on a machine shared with
// other work, where wall-clock rates swing with the load. Prints one line per operation, GB of frame
// per CPU-second, and its ratio to memcpy.
//
// Run: build/bench/troupe_bench_frame_seal [frame MiB, default 1] [seconds per operation, default 1]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "net/tcp/link_security.h"

namespace tcp = troupe::net::tcp;

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Bytes per CPU-second of `op` on `bytes`-byte frames, run for about `seconds` of CPU.
double rate(std::size_t bytes, double seconds, const std::function<void()>& op) {
  op();  // warm
  std::size_t frames = 0;
  const double start = cpu_seconds();
  double took = 0;
  do {
    for (int i = 0; i < 8; ++i) op();
    frames += 8;
    took = cpu_seconds() - start;
  } while (took < seconds);
  return static_cast<double>(frames * bytes) / took / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t bytes = (argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1) << 20;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  std::vector<std::byte> frame(bytes, std::byte{7}), out(bytes);
  const tcp::SessionKey key{1, 2, 3};

  const double copy = rate(bytes, seconds, [&] { std::memcpy(out.data(), frame.data(), bytes); });
  tcp::FrameSealer mac(tcp::Protection::integrity, key);
  const double seal = rate(bytes, seconds, [&] {
    mac.begin();
    mac.authenticate(frame);
    mac.finish();
  });
  tcp::FrameOpener check(tcp::Protection::integrity, key);
  const double open = rate(bytes, seconds, [&] {
    check.begin();
    check.authenticate(frame);
    check.finish(tcp::Seal{});  // a wrong seal costs the same as a right one
  });
  tcp::FrameSealer aead(tcp::Protection::encrypt, key);
  const double encrypt = rate(bytes, seconds, [&] {
    aead.begin();
    aead.encrypt(frame, out);
    aead.finish();
  });
  tcp::FrameOpener unseal(tcp::Protection::encrypt, key);
  const double decrypt = rate(bytes, seconds, [&] {
    unseal.begin();
    unseal.decrypt(out);
    unseal.finish(tcp::Seal{});
  });

  // A frame header's tag (a chunk's header: preamble and a 3-entry segment table, 24 bytes), tagged
  // by the sender and checked by the receiver: its cost per frame, in microseconds of CPU.
  const std::vector<std::byte> header(24, std::byte{3});
  tcp::FrameSealer tagger(tcp::Protection::integrity, key);
  tcp::FrameOpener tag_checker(tcp::Protection::integrity, key);
  const double tags = rate(1, seconds, [&] {
    const tcp::HeaderTag tag = tagger.header_tag(header);
    (void)tag_checker.header_matches(header, tag);
  });  // tag-and-check pairs per CPU-second, / 1e9

  std::printf("frames of %zu MiB, GB of frame per CPU-second (one thread); ratio to memcpy of the same bytes\n", bytes >> 20);
  std::printf("  %-34s %7.2f GB/s  1.00x\n", "memcpy (the copy every send makes)", copy);
  std::printf("  %-34s %7.2f GB/s  %.2fx\n", "integrity: seal (AES-256-GCM, GMAC)", seal, seal / copy);
  std::printf("  %-34s %7.2f GB/s  %.2fx\n", "integrity: open", open, open / copy);
  std::printf("  %-34s %7.2f GB/s  %.2fx\n", "encrypt: seal (copy + encrypt)", encrypt, encrypt / copy);
  std::printf("  %-34s %7.2f GB/s  %.2fx\n", "encrypt: open (decrypt in place)", decrypt, decrypt / copy);
  std::printf("  %-34s %7.3f us per frame (both ends), %.4f%% of sealing and opening the frame\n",
              "header tag: tag + check", 1e-3 / tags, 100.0 * (1e-3 / tags) / (1e6 * static_cast<double>(bytes) / 1e9 * (1 / seal + 1 / open)));
  return 0;
}
