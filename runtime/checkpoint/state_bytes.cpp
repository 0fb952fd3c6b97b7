// The byte form of a TrainingState: writer and checked reader.
#include "runtime/checkpoint/state_bytes.h"

#include <cstring>

#include "runtime/error.h"

namespace troupe {

namespace {
constexpr char kMagic[8] = {'T', 'R', 'P', 'S', 'T', 'A', 'T', 'E'};

struct Writer {
  std::vector<std::byte> out;
  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  }
  void u64(std::uint64_t v) { raw(&v, sizeof v); }
  void i64(std::int64_t v) { raw(&v, sizeof v); }
  void text(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void tensor(const std::string& name, const Tensor& t) {
    text(name);
    u64(static_cast<std::uint64_t>(t.dtype()));
    u64(t.shape().size());
    for (std::int64_t d : t.shape()) i64(d);
    u64(t.nbytes());
    raw(t.raw(), t.nbytes());
  }
};

struct Reader {
  std::span<const std::byte> in;
  const std::string& source;
  std::size_t at = 0;
  void raw(void* p, std::size_t n) {
    if (n > in.size() - at)
      throw Error(ErrorKind::kIo, "the training state from " + source + " ends early (at byte " + std::to_string(at) +
                                      " of " + std::to_string(in.size()) + ")");
    std::memcpy(p, in.data() + at, n);
    at += n;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::int64_t i64() {
    std::int64_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::string text() {
    const std::uint64_t n = u64();
    if (n > in.size() - at) raw(nullptr, n);  // throws: longer than what is left
    std::string s(n, '\0');
    raw(s.data(), n);
    return s;
  }
  std::pair<std::string, Tensor> tensor() {
    std::string name = text();
    const std::uint64_t dtype = u64();
    if (dtype > static_cast<std::uint64_t>(DType::i64))
      throw Error(ErrorKind::kIo, "the training state from " + source + ": tensor " + name + " has an unknown dtype");
    const std::uint64_t rank = u64();
    if (rank > 8) throw Error(ErrorKind::kIo, "the training state from " + source + ": tensor " + name + " has rank " + std::to_string(rank));
    Shape shape(rank);
    for (auto& d : shape) d = i64();
    Tensor t = Tensor::empty(shape, static_cast<DType>(dtype));
    if (u64() != t.nbytes())
      throw Error(ErrorKind::kIo, "the training state from " + source + ": tensor " + name + "'s size does not match its shape");
    raw(t.raw(), t.nbytes());
    return {std::move(name), std::move(t)};
  }
};
}  // namespace

std::vector<std::byte> state_to_bytes(const TrainingState& state) {
  Writer w;
  w.raw(kMagic, sizeof kMagic);
  w.i64(state.step);
  w.u64(state.params.size());
  for (const auto& [name, t] : state.params) w.tensor(name, t);
  w.i64(state.optimizer.step);
  w.u64(state.optimizer.params.size());
  for (const auto& [name, p] : state.optimizer.params) {
    w.text(name);
    w.i64(p.step);
    w.u64(p.tensors.size());
    for (const auto& [slot, t] : p.tensors) w.tensor(slot, t);
  }
  return std::move(w.out);
}

TrainingState state_from_bytes(std::span<const std::byte> bytes, const std::string& source) {
  Reader r{bytes, source};
  char magic[8];
  r.raw(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof magic) != 0)
    throw Error(ErrorKind::kIo, "what " + source + " sent is not a training state");
  TrainingState s;
  s.step = r.i64();
  for (std::uint64_t n = r.u64(), i = 0; i < n; ++i) s.params.push_back(r.tensor());
  s.optimizer.step = r.i64();
  for (std::uint64_t n = r.u64(), i = 0; i < n; ++i) {
    ParamState& p = s.optimizer.get_or_create(r.text());
    p.step = r.i64();
    for (std::uint64_t m = r.u64(), j = 0; j < m; ++j) {
      auto [slot, t] = r.tensor();
      p.tensors.emplace(std::move(slot), std::move(t));
    }
  }
  if (r.at != bytes.size())
    throw Error(ErrorKind::kIo, "the training state from " + source + " has " + std::to_string(bytes.size() - r.at) +
                                    " bytes after its end");
  return s;
}

}  // namespace troupe
