// Creating, mapping and unmapping segments (memfd_create, /proc/PID/fd, mmap) and the segment layout's offsets.
#include "net/shm/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>
#include <utility>

#include "runtime/error.h"

namespace troupe::net::shm {

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::size_t header_bytes() { return round_up(sizeof(SegmentHeader), 64); }

std::byte* map(int fd, std::size_t bytes, const std::string& what) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorKind::kIo, detail::concat("shared-memory transport: cannot map ", what, " (", bytes, " bytes): ",
                                               std::strerror(err)));
  }
  return static_cast<std::byte*>(p);
}

}  // namespace

std::size_t SegmentLayout::control_offset(int sender) const {
  return header_bytes() + static_cast<std::size_t>(sender) * sizeof(RingControl);
}

std::size_t SegmentLayout::window_offset() const { return control_offset(ranks); }

std::size_t SegmentLayout::slot_offset(int sender, std::size_t slot) const {
  const std::size_t rings = round_up(window_offset() + sizeof(WindowControl), 4096);
  return rings + (static_cast<std::size_t>(sender) * slots + slot) * slot_stride();
}

std::size_t SegmentLayout::staging_offset(std::size_t piece) const {
  return round_up(slot_offset(ranks, 0), 4096) + piece * piece_bytes;
}

std::size_t SegmentLayout::bytes() const { return round_up(staging_offset(pieces), 4096); }

Segment Segment::create(const SegmentLayout& layout, int owner) {
  const std::string name = detail::concat("troupe-shm-rank", owner);
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorKind::kIo, detail::concat("shared-memory transport: memfd_create failed on rank ", owner, ": ",
                                               std::strerror(errno)));
  }
  const std::size_t bytes = layout.bytes();
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(ErrorKind::kIo, detail::concat("shared-memory transport: cannot size rank ", owner, "'s segment to ", bytes,
                                               " bytes: ", std::strerror(err),
                                               "; lower comm.shm_slot_bytes or comm.shm_slots"));
  }
  Segment s;
  s.layout_ = layout;
  s.fd_ = fd;
  s.base_ = map(fd, bytes, detail::concat("rank ", owner, "'s own segment"));
  // A fresh memfd reads as zeros: every counter, doorbell and state starts at 0 (kOpen).
  auto* h = new (s.base_) SegmentHeader;
  for (int r = 0; r < layout.ranks; ++r) new (s.base_ + layout.control_offset(r)) RingControl;
  new (s.base_ + layout.window_offset()) WindowControl;
  h->ranks = static_cast<std::uint32_t>(layout.ranks);
  h->owner = static_cast<std::uint32_t>(owner);
  h->slots = layout.slots;
  h->slot_bytes = layout.slot_bytes;
  h->bytes = bytes;
  std::atomic_thread_fence(std::memory_order_release);
  h->magic = kSegmentMagic;
  return s;
}

Segment Segment::open_peer(const SegmentLayout& layout, int owner, int pid, int fd) {
  const std::string path = detail::concat("/proc/", pid, "/fd/", fd);
  const int mine = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (mine < 0) {
    throw Error(ErrorKind::kIo, detail::concat("shared-memory transport: cannot open rank ", owner, "'s segment at ", path,
                                               ": ", std::strerror(errno),
                                               "; comm.transport = shm needs every rank on this host, run by the same "
                                               "user (use comm.transport = tcp otherwise)"));
  }
  struct stat st {};
  if (::fstat(mine, &st) != 0 || static_cast<std::size_t>(st.st_size) != layout.bytes()) {
    ::close(mine);
    throw Error(ErrorKind::kIo, detail::concat("shared-memory transport: rank ", owner, "'s segment at ", path, " has ",
                                               st.st_size, " bytes, expected ", layout.bytes(),
                                               "; the ranks disagree on comm.shm_slot_bytes or comm.shm_slots"));
  }
  Segment s;
  s.layout_ = layout;
  s.base_ = map(mine, layout.bytes(), detail::concat("rank ", owner, "'s segment"));
  ::close(mine);  // the mapping keeps the memory
  const SegmentHeader& h = s.header();
  if (h.magic != kSegmentMagic || h.owner != static_cast<std::uint32_t>(owner) ||
      h.ranks != static_cast<std::uint32_t>(layout.ranks) || h.slots != layout.slots || h.slot_bytes != layout.slot_bytes) {
    throw Error(ErrorKind::kIo, detail::concat("shared-memory transport: rank ", owner, "'s segment at ", path,
                                               " is not the one it announced (header: owner ", h.owner, ", ranks ", h.ranks,
                                               ", slots ", h.slots, " of ", h.slot_bytes, " bytes)"));
  }
  return s;
}

Segment::Segment(Segment&& o) noexcept
    : layout_(o.layout_), base_(std::exchange(o.base_, nullptr)), fd_(std::exchange(o.fd_, -1)) {}

Segment& Segment::operator=(Segment&& o) noexcept {
  if (this != &o) {
    this->~Segment();
    layout_ = o.layout_;
    base_ = std::exchange(o.base_, nullptr);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Segment::~Segment() {
  if (base_) ::munmap(base_, layout_.bytes());
  close_fd();
}

void Segment::close_fd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string host_identity() {
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  struct stat st {};
  const auto pidns = ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<unsigned long long>(st.st_ino) : 0ULL;
  return detail::concat(boot, "/pidns:", pidns);
}

}  // namespace troupe::net::shm
