// safetensors writer (atomic, byte-compatible with the reference) and validating reader.
#include "runtime/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/io/partial_files.h"

#include "runtime/error.h"

namespace troupe {

// Tensors are copied to and from the file as raw bytes; the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit
constexpr const char* kMetadataKey = "__metadata__";

[[noreturn]] void io_error(const std::string& path, const std::string& what) {
  throw Error(ErrorKind::kIo, fmt::format("{}: {}", path, what));
}

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  throw Error(ErrorKind::kInput, fmt::format("{}: not a valid safetensors file: {}", path, what));
}

[[noreturn]] void bad_tensor(const std::string& path, const std::string& name, const std::string& what) {
  throw Error(ErrorKind::kInput, fmt::format("{}: not a valid safetensors file: tensor '{}': {}", path, name, what));
}

std::optional<DType> dtype_from_name(std::string_view name) {
  if (name == "F32") return DType::f32;
  if (name == "BF16") return DType::bf16;
  if (name == "I32") return DType::i32;
  if (name == "I64") return DType::i64;
  return std::nullopt;
}

// Closes a file descriptor on every path out of a scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const void* data, std::size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) io_error(path, fmt::format("write failed: {}", std::strerror(errno)));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Reads exactly n bytes at `offset`; the file may have shrunk since its size was taken.
void read_all(int fd, void* data, std::size_t n, std::uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(path, fmt::format("read failed: {}", std::strerror(errno)));
    if (r == 0) io_error(path, fmt::format("file ended at byte {} while reading (changed while being read?)", offset));
    p += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
}

// The JSON header, without padding. ordered_json keeps insertion order, which is the reference's:
// __metadata__ first, tensors in data order, and dtype, shape, data_offsets within each.
std::string make_header(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata,
                        const std::string& path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string_view> seen;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == kMetadataKey)
      throw Error(ErrorKind::kInput, fmt::format("{}: cannot save a tensor named '{}': the name is reserved", path, name));
    if (!seen.insert(name).second)
      throw Error(ErrorKind::kInput, fmt::format("{}: cannot save: tensor name '{}' is given twice", path, name));
    if (!t.defined())
      throw Error(ErrorKind::kInput, fmt::format("{}: cannot save tensor '{}': it is undefined", path, name));
    if (!t.device().is_cpu())
      throw Error(ErrorKind::kInput, fmt::format("{}: cannot save tensor '{}': it is on {}; copy it to the CPU first",
                                                 path, name, t.device().str()));
    std::uint64_t end = offset + t.nbytes();
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  try {
    return header.dump();
  } catch (const nlohmann::json::type_error& e) {
    // dump() refuses invalid UTF-8, which the format forbids in the header.
    throw Error(ErrorKind::kInput, fmt::format("{}: cannot save: a tensor name or metadata entry is not valid UTF-8 ({})",
                                               path, e.what()));
  }
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  return "?";
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string header = make_header(tensors, metadata, path);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  header.append((8 - header.size() % 8) % 8, ' ');
  std::uint64_t header_len = header.size();

  // The temporary file lives beside the target: rename() is atomic only within one filesystem.
  std::filesystem::path target(path);
  std::filesystem::path dir = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  // Built with append(): GCC 12 gives a false -Wrestrict warning for "." + std::string at -O2.
  std::string tmp_name = ".";
  tmp_name.append(target.filename().string()).append(".tmp.XXXXXX");
  std::string tmp = (dir / tmp_name).string();
  Fd file{::mkstemp(tmp.data())};
  if (file.fd < 0) io_error(path, fmt::format("cannot create a file in '{}': {}", dir.string(), std::strerror(errno)));
  const PartialPath partial(tmp);  // an abort (second Ctrl-C) removes it too

  try {
    // mkstemp creates the file 0600; a weights file is as readable as any other output.
    if (::fchmod(file.fd, 0644) != 0) io_error(path, fmt::format("chmod failed: {}", std::strerror(errno)));
    write_all(file.fd, &header_len, 8, path);
    write_all(file.fd, header.data(), header.size(), path);
    for (const auto& [name, t] : tensors)
      if (t.nbytes()) write_all(file.fd, t.raw(), t.nbytes(), path);
    // Data on disk before the rename makes it visible: otherwise a crash could leave a complete-looking
    // name over an empty or partial file.
    if (::fsync(file.fd) != 0) io_error(path, fmt::format("fsync failed: {}", std::strerror(errno)));
    int fd = file.fd;
    file.fd = -1;
    if (::close(fd) != 0) io_error(path, fmt::format("close failed: {}", std::strerror(errno)));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      io_error(path, fmt::format("cannot rename the temporary file into place: {}", std::strerror(errno)));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }

  // Make the rename itself durable. The file is already complete, so a failure here is not reported.
  Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY)};
  if (d.fd >= 0) ::fsync(d.fd);
}

namespace {

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

// One tensor's header entry, checked on its own (the tiling of the data is checked afterwards).
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& info, std::uint64_t data_size) {
  if (!info.is_object()) bad_tensor(path, name, fmt::format("expected an object, found {}", info.dump()));
  auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = info.find(key);
    if (it == info.end()) bad_tensor(path, name, fmt::format("missing \"{}\"", key));
    return *it;
  };
  const auto& dtype_j = field("dtype");
  const auto& shape_j = field("shape");
  const auto& offsets_j = field("data_offsets");

  if (!dtype_j.is_string()) bad_tensor(path, name, fmt::format("dtype {} is not a string", dtype_j.dump()));
  auto dtype = dtype_from_name(dtype_j.get<std::string>());
  if (!dtype)
    bad_tensor(path, name, fmt::format("unknown or unsupported dtype {} (troupe reads F32, BF16, I32, I64)", dtype_j.dump()));

  Entry e{name, *dtype, {}, 0, 0};
  if (!shape_j.is_array()) bad_tensor(path, name, fmt::format("shape {} is not a list", shape_j.dump()));
  // Element count times element size; an overflow can only be "more than the file holds", unless a zero
  // dimension makes the tensor empty anyway.
  std::uint64_t bytes = dtype_size(*dtype);
  bool overflow = false, has_zero = false;
  for (const auto& d : shape_j) {
    if (!d.is_number_unsigned())
      bad_tensor(path, name, fmt::format("shape {} must list non-negative integers", shape_j.dump()));
    auto dim = d.get<std::uint64_t>();
    if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      bad_tensor(path, name, fmt::format("shape {} has a dimension above 2^63-1", shape_j.dump()));
    has_zero |= dim == 0;
    overflow |= __builtin_mul_overflow(bytes, dim, &bytes);
    e.shape.push_back(static_cast<std::int64_t>(dim));
  }
  if (has_zero) bytes = 0, overflow = false;

  if (!offsets_j.is_array() || offsets_j.size() != 2 || !offsets_j[0].is_number_unsigned() ||
      !offsets_j[1].is_number_unsigned())
    bad_tensor(path, name, fmt::format("data_offsets {} must be two non-negative integers [begin, end]", offsets_j.dump()));
  e.begin = offsets_j[0].get<std::uint64_t>();
  e.end = offsets_j[1].get<std::uint64_t>();
  if (e.end < e.begin) bad_tensor(path, name, fmt::format("data_offsets [{}, {}] end before they begin", e.begin, e.end));
  if (e.end > data_size)
    bad_tensor(path, name, fmt::format("data_offsets [{}, {}] are out of range: the data section is {} bytes", e.begin,
                                       e.end, data_size));
  if (overflow || e.end - e.begin != bytes)
    bad_tensor(path, name, fmt::format("data_offsets [{}, {}] hold {} bytes, but {} {} needs {}", e.begin, e.end,
                                       e.end - e.begin, dtype_j.get<std::string>(), shape_str(e.shape),
                                       overflow ? std::string("more than 2^64") : std::to_string(bytes)));
  return e;
}

}  // namespace

namespace {

// A validated header: the metadata, the tensors' entries sorted by offset, where the data starts, and
// the open file to read the data from.
struct Header {
  Fd file;
  std::map<std::string, std::string> metadata;
  std::vector<Entry> entries;
  std::uint64_t data_start = 0;
};

// Opens `path` and checks its whole header (see load_safetensors) without reading any tensor data.
void read_header(const std::string& path, Header& h) {
  Fd& file = h.file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) {
    if (errno == ENOENT) io_error(path, "safetensors file not found");
    io_error(path, fmt::format("cannot open: {}", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) io_error(path, fmt::format("cannot stat: {}", std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) io_error(path, "is a directory, not a safetensors file");
  auto file_size = static_cast<std::uint64_t>(st.st_size);

  if (file_size < 8)
    bad_file(path, fmt::format("the file is {} bytes, too short to hold the 8-byte header length", file_size));
  std::uint64_t header_len = 0;
  read_all(file.fd, &header_len, 8, 0, path);
  if (header_len > kMaxHeaderBytes)
    bad_file(path, fmt::format("header length {} is absurd (the limit is {} bytes); is this a safetensors file?",
                               header_len, kMaxHeaderBytes));
  if (header_len > file_size - 8)
    bad_file(path, fmt::format("header length {} is larger than the {} bytes that follow it (file truncated?)",
                               header_len, file_size - 8));
  const std::uint64_t data_start = h.data_start = 8 + header_len;
  std::uint64_t data_size = file_size - data_start;

  std::string header_text(header_len, '\0');
  read_all(file.fd, header_text.data(), header_len, 8, path);

  // A JSON object may repeat a key, and the parser would keep one silently; the callback sees every key
  // of the top-level object (depth 1) so that a tensor named twice is caught.
  std::set<std::string> names;
  std::string duplicate;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text, [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 && !names.insert(parsed.get<std::string>()).second &&
          duplicate.empty())
        duplicate = parsed.get<std::string>();
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    bad_file(path, fmt::format("the header is not valid JSON: {}", e.what()));
  }
  if (!duplicate.empty()) bad_tensor(path, duplicate, "the name appears twice in the header");
  if (!header.is_object()) bad_file(path, fmt::format("the header is a JSON {}, not an object", header.type_name()));

  std::map<std::string, std::string>& meta = h.metadata;
  std::vector<Entry>& entries = h.entries;
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      if (!info.is_object()) bad_file(path, "__metadata__ must be an object of strings");
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) bad_file(path, fmt::format("__metadata__ entry '{}' is {}, not a string", k, v.dump()));
        meta[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, info, data_size));
  }

  // The tensors must tile the data section exactly, as the reference reader requires: sorted by
  // offset, each begins where the previous ended, and the last ends at the end of the file.
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const auto& e : entries) {
    if (e.begin < expected)
      bad_tensor(path, e.name, fmt::format("data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", e.begin, e.end,
                                           previous->name, previous->begin, previous->end));
    if (e.begin > expected)
      bad_tensor(path, e.name, fmt::format("data_offsets [{}, {}] leave a hole: bytes [{}, {}) belong to no tensor",
                                           e.begin, e.end, expected, e.begin));
    expected = e.end;
    previous = &e;
  }
  if (expected != data_size)
    bad_file(path, fmt::format("the data section is {} bytes but the tensors cover only {}: {} bytes belong to no tensor",
                               data_size, expected, data_size - expected));
}

}  // namespace

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  Header h;
  read_header(path, h);
  return std::move(h.metadata);
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  Header h;
  read_header(path, h);
  const Fd& file = h.file;
  const std::vector<Entry>& entries = h.entries;
  const std::uint64_t data_start = h.data_start;
  NamedTensors out;
  out.reserve(entries.size());
  for (const auto& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (t.nbytes()) read_all(file.fd, t.raw(), t.nbytes(), data_start + e.begin, path);
    out.emplace_back(e.name, std::move(t));
  }
  if (metadata) *metadata = std::move(h.metadata);
  return out;
}

}  // namespace troupe
