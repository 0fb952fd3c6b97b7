// The parameter-server link format's encoders and bounds-checked decoders.
#include "actors/state/ps/ps_wire.h"

#include <cstring>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::ps::wire {

namespace {

class Writer {
 public:
  template <class T>
  void put(const T& value) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  void put_bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), p, p + n);
  }
  void put_floats(const Tensor& t) {
    put<std::int64_t>(t.defined() ? t.numel() : 0);
    if (t.defined() && t.numel() > 0) put_bytes(t.f32(), t.nbytes());
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  Reader(std::span<const std::byte> in, std::string what, std::string peer)
      : in_(in), what_(std::move(what)), peer_(std::move(peer)) {}

  [[noreturn]] void bad(const std::string& why) const {
    throw Error(ErrorKind::kIo, fmt::format("malformed ps {} from {}: {} (at byte {} of {})", what_, peer_, why, at_, in_.size()));
  }
  template <class T>
  T get(const char* field) {
    if (in_.size() - at_ < sizeof(T)) bad(fmt::format("{} is cut off", field));
    T v;
    std::memcpy(&v, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  // A count that must equal `expected` (expected < 0: any count whose `each`-byte items fit the rest).
  std::int64_t count(const char* field, std::int64_t expected, std::size_t each) {
    const auto n = get<std::int64_t>(field);
    if (expected >= 0 && n != expected) bad(fmt::format("{} is {}, expected {}", field, n, expected));
    if (n < 0 || (each > 0 && static_cast<std::uint64_t>(n) > (in_.size() - at_) / each))
      bad(fmt::format("{} = {} does not fit the {} bytes left", field, n, in_.size() - at_));
    return n;
  }
  void take(void* out, std::size_t n, const char* field) {
    if (in_.size() - at_ < n) bad(fmt::format("{} is cut off", field));
    if (n) std::memcpy(out, in_.data() + at_, n);
    at_ += n;
  }
  Tensor floats(const Shape& shape, const char* field) {
    Tensor t = Tensor::empty(shape);
    count(field, t.numel(), sizeof(float));
    take(t.numel() ? t.f32() : nullptr, t.nbytes(), field);
    return t;
  }
  void done() const {
    if (at_ != in_.size()) bad(fmt::format("{} bytes left over", in_.size() - at_));
  }

 private:
  std::span<const std::byte> in_;
  std::size_t at_ = 0;
  std::string what_, peer_;
};

void put_ids(Writer& w, const std::vector<std::int64_t>& ids) {
  w.put<std::int64_t>(static_cast<std::int64_t>(ids.size()));
  if (!ids.empty()) w.put_bytes(ids.data(), ids.size() * sizeof(std::int64_t));
}

std::vector<std::int64_t> get_ids(Reader& r, const PsLayout& layout, int t) {
  const std::int64_t n = r.count("row id count", -1, sizeof(std::int64_t));
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  r.take(ids.data(), ids.size() * sizeof(std::int64_t), "row ids");
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= layout.table_rows(t) || (i > 0 && ids[i] <= ids[i - 1]))
      r.bad(fmt::format("table {} row id {} at position {} is out of order or out of [0, {})", t, ids[i], i, layout.table_rows(t)));
  return ids;
}

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::pull: return "pull";
    case Kind::push: return "push";
    case Kind::push_exact: return "exact push";
    case Kind::clip: return "clip";
    case Kind::report: return "loss report";
    case Kind::bye: return "goodbye";
    case Kind::hello: return "hello";
    case Kind::ok: return "answer";
    case Kind::error: return "error";
  }
  return "unknown";
}

void check_header(const Header& h, const std::string& peer) {
  if (h.magic != kMagic)
    throw Error(ErrorKind::kIo, fmt::format("malformed ps message from {}: bad magic {:#010x} (expected {:#010x}); is the peer "
                                            "a troupe of the same version?",
                                            peer, h.magic, kMagic));
  const auto k = static_cast<std::uint32_t>(h.kind);
  if (!((k >= 1 && k <= 7) || k == 100 || k == 101))
    throw Error(ErrorKind::kIo, fmt::format("malformed ps message from {}: unknown kind {}", peer, k));
}

std::vector<std::byte> encode_pull(const std::vector<std::vector<std::int64_t>>& ids) {
  Writer w;
  w.put<std::int64_t>(static_cast<std::int64_t>(ids.size()));
  for (const auto& list : ids) put_ids(w, list);
  return w.take();
}

std::vector<std::vector<std::int64_t>> decode_pull(std::span<const std::byte> payload, const PsLayout& layout,
                                                   const std::string& peer) {
  Reader r(payload, "pull", peer);
  const std::int64_t tables = r.get<std::int64_t>("table count");
  if (tables != 0 && tables != layout.num_tables())
    r.bad(fmt::format("row ids for {} tables, the model has {}", tables, layout.num_tables()));
  std::vector<std::vector<std::int64_t>> ids;
  for (int t = 0; t < tables; ++t) ids.push_back(get_ids(r, layout, t));
  r.done();
  return ids;
}

std::vector<std::byte> encode_pulled(const PsPulled& pulled) {
  Writer w;
  for (const Tensor& d : pulled.dense) w.put_floats(d);
  for (const Tensor& t : pulled.tables) w.put_floats(t);
  w.put<std::int64_t>(pulled.min_version);
  return w.take();
}

PsPulled decode_pulled(std::span<const std::byte> payload, const PsLayout& layout, bool dense,
                       const std::vector<std::vector<std::int64_t>>& ids, const std::string& peer) {
  Reader r(payload, "pull answer", peer);
  PsPulled out;
  if (dense)
    for (int d = 0; d < layout.num_dense(); ++d) out.dense.push_back(r.floats(layout.dense_spec(d).shape, "dense parameter"));
  for (std::size_t t = 0; t < ids.size(); ++t)
    out.tables.push_back(
        r.floats({static_cast<std::int64_t>(ids[t].size()), layout.table_dim(static_cast<int>(t))}, "table rows"));
  out.min_version = r.get<std::int64_t>("version");
  r.done();
  return out;
}

std::vector<std::byte> encode_push(const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables) {
  Writer w;
  w.put<std::int64_t>(static_cast<std::int64_t>(dense.size()));
  for (const Tensor& d : dense) w.put_floats(d);
  w.put<std::int64_t>(static_cast<std::int64_t>(tables.size()));
  for (const SparseRows& t : tables) {
    put_ids(w, t.ids);
    w.put_floats(t.ids.empty() ? Tensor() : t.rows);
  }
  return w.take();
}

PushPayload decode_push(std::span<const std::byte> payload, const PsLayout& layout, const std::string& peer) {
  Reader r(payload, "push", peer);
  PushPayload out;
  const std::int64_t dense = r.get<std::int64_t>("dense count");
  if (dense != 0 && dense != layout.num_dense())
    r.bad(fmt::format("{} dense gradients, the model has {} dense parameters", dense, layout.num_dense()));
  for (int d = 0; d < dense; ++d) out.dense.push_back(r.floats(layout.dense_spec(d).shape, "dense gradient"));
  const std::int64_t tables = r.get<std::int64_t>("table count");
  if (tables != 0 && tables != layout.num_tables())
    r.bad(fmt::format("sparse gradients for {} tables, the model has {}", tables, layout.num_tables()));
  for (int t = 0; t < tables; ++t) {
    SparseRows rows;
    rows.ids = get_ids(r, layout, t);
    const auto n = static_cast<std::int64_t>(rows.ids.size());
    if (n > 0) {
      rows.rows = r.floats({n, layout.table_dim(t)}, "sparse gradient rows");
    } else {
      r.count("sparse gradient rows", 0, sizeof(float));
      rows.rows = Tensor::empty({0, layout.table_dim(t)});
    }
    out.tables.push_back(std::move(rows));
  }
  r.done();
  return out;
}

std::vector<std::byte> encode_push_exact(const std::vector<ExactGrad>& exact) {
  Writer w;
  w.put<std::int64_t>(static_cast<std::int64_t>(exact.size()));
  for (const ExactGrad& g : exact) {
    w.put<std::int32_t>(g.buffers);
    w.put<std::int64_t>(static_cast<std::int64_t>(g.sums.size()));
    if (!g.sums.empty()) w.put_bytes(g.sums.data(), g.sums.size() * sizeof(ExactSum));
  }
  return w.take();
}

std::vector<ExactGrad> decode_push_exact(std::span<const std::byte> payload, const PsLayout& layout, const std::string& peer) {
  Reader r(payload, "exact push", peer);
  r.count("exact gradient count", layout.num_dense(), 0);
  std::vector<ExactGrad> out(static_cast<std::size_t>(layout.num_dense()));
  for (int d = 0; d < layout.num_dense(); ++d) {
    ExactGrad& g = out[static_cast<std::size_t>(d)];
    g.buffers = r.get<std::int32_t>("buffer count");
    if (g.buffers < 1 || g.buffers > 8) r.bad(fmt::format("dense gradient {} has {} buffers (1..8)", d, g.buffers));
    const std::int64_t numel = shape_numel(layout.dense_spec(d).shape);
    r.count("exact sum count", numel * g.buffers, sizeof(ExactSum));
    g.sums.resize(static_cast<std::size_t>(numel * g.buffers));
    r.take(g.sums.data(), g.sums.size() * sizeof(ExactSum), "exact sums");
  }
  r.done();
  return out;
}

std::vector<std::byte> encode_losses(const std::vector<double>& losses) {
  Writer w;
  w.put<std::int64_t>(static_cast<std::int64_t>(losses.size()));
  if (!losses.empty()) w.put_bytes(losses.data(), losses.size() * sizeof(double));
  return w.take();
}

std::vector<double> decode_losses(std::span<const std::byte> payload, const std::string& peer) {
  Reader r(payload, "loss report", peer);
  const std::int64_t n = r.count("loss count", -1, sizeof(double));
  std::vector<double> out(static_cast<std::size_t>(n));
  r.take(out.data(), out.size() * sizeof(double), "losses");
  r.done();
  return out;
}

std::vector<std::byte> encode_i64(std::int64_t value) {
  Writer w;
  w.put<std::int64_t>(value);
  return w.take();
}

std::int64_t decode_i64(std::span<const std::byte> payload, const std::string& what, const std::string& peer) {
  Reader r(payload, what, peer);
  const auto v = r.get<std::int64_t>("value");
  r.done();
  return v;
}

std::vector<std::byte> encode_f64(double value) {
  Writer w;
  w.put<double>(value);
  return w.take();
}

double decode_f64(std::span<const std::byte> payload, const std::string& what, const std::string& peer) {
  Reader r(payload, what, peer);
  const double v = r.get<double>("value");
  r.done();
  return v;
}

}  // namespace troupe::ps::wire
