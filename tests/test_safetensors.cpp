// Tests of safetensors I/O: round trips, byte-exactness against the reference writer, every rejected corruption, atomic save.
#include <catch2/catch.hpp>

#include "temp_dir.h"

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "runtime/config/config_loader.h"
#include "runtime/config/weights_config.h"
#include "runtime/io/safetensors.h"
#include "runtime/version.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {


std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A file with the given header text (unpadded: the reader does not require padding) and data bytes.
std::vector<std::uint8_t> make_file(const std::string& header, std::size_t data_bytes, std::uint64_t header_len = ~0ull) {
  if (header_len == ~0ull) header_len = header.size();
  std::vector<std::uint8_t> out(8 + header.size() + data_bytes);
  std::memcpy(out.data(), &header_len, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = static_cast<std::uint8_t>(i);
  return out;
}

// The troupe::Error that loading `bytes` throws.
Error load_error(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  write_bytes(path, bytes);
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    return e;
  }
  FAIL("expected load_safetensors to throw");
  return Error(ErrorKind::kInternal, "");
}

template <class T>
std::vector<T> values(const Tensor& t) {
  std::vector<T> v(static_cast<std::size_t>(t.numel()));
  if (!v.empty()) std::memcpy(v.data(), t.raw(), t.nbytes());
  return v;
}

// Made with the reference writer, safetensors 0.8.0 (pip install safetensors numpy in a throwaway venv):
//   import ctypes, struct
//   from safetensors import serialize, TensorSpec
//   bufs = []
//   def spec(dtype, shape, raw):
//       b = ctypes.create_string_buffer(raw, len(raw)); bufs.append(b)
//       return TensorSpec(dtype=dtype, shape=shape, data_ptr=ctypes.addressof(b), data_len=len(raw))
//   out = bytes(serialize({"w": spec("float32", [2, 2], struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)),
//                          "b": spec("bfloat16", [3], struct.pack("<3H", 0x3f80, 0xc000, 0x3f00)),
//                          "i": spec("int32", [2], struct.pack("<2i", 7, -1))},
//                         metadata={"format": "pt"}))
//   print(", ".join("0x%02x" % c for c in out))
// The reference orders tensors by dtype alignment then name, so the data order is w, i, b; troupe keeps
// the caller's order, so the test passes them in that order.
const std::vector<std::uint8_t> kReferenceFile = {
    0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61, 0x64, 0x61,
    0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x22, 0x3a, 0x22, 0x70,
    0x74, 0x22, 0x7d, 0x2c, 0x22, 0x77, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22,
    0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x2c, 0x32, 0x5d,
    0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30,
    0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x69, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22,
    0x3a, 0x22, 0x49, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d,
    0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31,
    0x36, 0x2c, 0x32, 0x34, 0x5d, 0x7d, 0x2c, 0x22, 0x62, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65,
    0x22, 0x3a, 0x22, 0x42, 0x46, 0x31, 0x36, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b,
    0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a,
    0x5b, 0x32, 0x34, 0x2c, 0x33, 0x30, 0x5d, 0x7d, 0x7d, 0x20, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,
    0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x40, 0x40, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x80, 0x3f,
    0x00, 0xc0, 0x00, 0x3f,
};

NamedTensors reference_tensors() {
  const float w[] = {1.0f, -2.0f, 0.5f, 3.0f};
  const std::int32_t i[] = {7, -1};
  Tensor b = Tensor::empty({3}, DType::bf16);
  b.bf16()[0] = 0x3f80;  // 1.0
  b.bf16()[1] = 0xc000;  // -2.0
  b.bf16()[2] = 0x3f00;  // 0.5
  return {{"w", Tensor::from_f32({2, 2}, w)}, {"i", Tensor::from_i32({2}, i)}, {"b", b}};
}

}  // namespace

TEST_CASE("round trip of f32, bf16, i32 and i64 tensors, in order, with metadata", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("weights.safetensors");
  std::vector<float> f(6);
  for (std::size_t k = 0; k < f.size(); ++k) f[k] = 0.25f * static_cast<float>(k) - 1.0f;
  Tensor f32 = Tensor::from_f32({2, 3}, f);
  Tensor bf16 = f32.to(DType::bf16);
  const std::int32_t ints[] = {1, -2, 3, 2147483647};
  Tensor i64 = Tensor::empty({3}, DType::i64);
  i64.i64()[0] = -1;
  i64.i64()[1] = 1ll << 40;
  i64.i64()[2] = 5;
  Tensor scalar = Tensor::from_f32({}, std::vector<float>{42.0f});
  Tensor empty = Tensor::zeros({0, 4});
  // The names are deliberately not in sorted order: the file keeps the caller's order.
  NamedTensors saved = {{"z.weight", f32},  {"a.bf16", bf16}, {"m.ints", Tensor::from_i32({2, 2}, ints)},
                        {"big", i64},       {"scalar", scalar}, {"empty", empty}};
  save_safetensors(path, saved, {{"format", "pt"}, {"step", "300"}});

  std::map<std::string, std::string> meta;
  NamedTensors loaded = load_safetensors(path, &meta);
  CHECK(meta == std::map<std::string, std::string>{{"format", "pt"}, {"step", "300"}});
  REQUIRE(loaded.size() == saved.size());
  for (std::size_t k = 0; k < saved.size(); ++k) {
    INFO(saved[k].first);
    CHECK(loaded[k].first == saved[k].first);
    CHECK(loaded[k].second.dtype() == saved[k].second.dtype());
    CHECK(loaded[k].second.shape() == saved[k].second.shape());
  }
  CHECK(values<float>(loaded[0].second) == f);
  CHECK(values<std::uint16_t>(loaded[1].second) == values<std::uint16_t>(bf16));
  CHECK(values<std::int32_t>(loaded[2].second) == std::vector<std::int32_t>(std::begin(ints), std::end(ints)));
  CHECK(values<std::int64_t>(loaded[3].second) == std::vector<std::int64_t>{-1, 1ll << 40, 5});
  CHECK(values<float>(loaded[4].second) == std::vector<float>{42.0f});
  CHECK(loaded[5].second.numel() == 0);

  // The header is padded so that the data starts 8-byte aligned.
  auto bytes = read_bytes(path);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((8 + n) % 8 == 0);
  CHECK(bytes[8 + n - 1] != 0);

  // Saving again replaces the file; nothing is left beside it.
  save_safetensors(path, {{"only", scalar}});
  CHECK(load_safetensors(path, &meta).size() == 1);
  CHECK(meta.empty());
  CHECK(dir.entries() == std::vector<std::string>{"weights.safetensors"});
}

TEST_CASE("a slice is saved as its own rows", "[safetensors]") {
  TempDir dir;
  Tensor t = Tensor::from_f32({3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6});
  save_safetensors(dir.file("s.safetensors"), {{"rows", t.slice(1, 3)}});
  auto loaded = load_safetensors(dir.file("s.safetensors"));
  CHECK(loaded.at(0).second.shape() == Shape{2, 2});
  CHECK(values<float>(loaded.at(0).second) == std::vector<float>{3, 4, 5, 6});
}

TEST_CASE("bytes match the reference Python writer", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("ref.safetensors");
  save_safetensors(path, reference_tensors(), {{"format", "pt"}});
  CHECK(read_bytes(path) == kReferenceFile);

  // And the reference's bytes load to the same tensors.
  write_bytes(path, kReferenceFile);
  std::map<std::string, std::string> meta;
  auto loaded = load_safetensors(path, &meta);
  CHECK(meta == std::map<std::string, std::string>{{"format", "pt"}});
  REQUIRE(loaded.size() == 3);
  CHECK(loaded[0].first == "w");
  CHECK(values<float>(loaded[0].second) == std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f});
  CHECK(loaded[1].first == "i");
  CHECK(values<std::int32_t>(loaded[1].second) == std::vector<std::int32_t>{7, -1});
  CHECK(loaded[2].first == "b");
  CHECK(loaded[2].second.dtype() == DType::bf16);
  CHECK(loaded[2].second.to_vector() == std::vector<float>{1.0f, -2.0f, 0.5f});
}

TEST_CASE("tensors load in data order, whatever the header's order", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("order.safetensors");
  write_bytes(path, make_file(R"({"second":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},)"
                              R"("first":{"dtype":"I32","shape":[1],"data_offsets":[0,4],"extra":"ignored"}})",
                              8));
  auto loaded = load_safetensors(path);
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].first == "first");
  CHECK(loaded[1].first == "second");
}

TEST_CASE("every corruption is rejected with a message naming the file and the fault", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  auto expect = [&](const std::vector<std::uint8_t>& bytes, ErrorKind kind, std::vector<std::string> words) {
    Error e = load_error(path, bytes);
    INFO(e.what());
    CHECK(e.kind() == kind);
    CHECK_THAT(e.what(), Contains(path));
    for (const auto& w : words) CHECK_THAT(e.what(), Contains(w));
  };
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SECTION("missing file") {
    try {
      load_safetensors(dir.file("absent.safetensors"));
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kIo);
      CHECK_THAT(e.what(), Contains(dir.file("absent.safetensors")) && Contains("not found"));
    }
  }
  SECTION("a directory") {
    try {
      load_safetensors(dir.path.string());
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kIo);
      CHECK_THAT(e.what(), Contains("is a directory"));
    }
  }
  SECTION("shorter than 8 bytes") { expect({1, 2, 3, 4, 5}, ErrorKind::kInput, {"5 bytes", "too short"}); }
  SECTION("empty file") { expect({}, ErrorKind::kInput, {"0 bytes", "too short"}); }
  SECTION("header length beyond the file") {
    expect(make_file("{}", 0, 1000), ErrorKind::kInput, {"header length 1000", "larger than the 2 bytes"});
  }
  SECTION("absurd header length") {
    expect(make_file("{}", 0, 200'000'000), ErrorKind::kInput, {"header length 200000000 is absurd"});
    expect(make_file("{}", 0, ~0ull - 1), ErrorKind::kInput, {"is absurd"});
  }
  SECTION("invalid JSON") { expect(make_file("{\"a\": nope}", 0), ErrorKind::kInput, {"not valid JSON"}); }
  SECTION("JSON that is not an object") { expect(make_file("[1, 2]", 0), ErrorKind::kInput, {"JSON array, not an object"}); }
  SECTION("unknown dtype") {
    expect(make_file(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4), ErrorKind::kInput,
           {"tensor 'a'", "unknown or unsupported dtype \"F16\""});
    expect(make_file(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,4]}})", 4), ErrorKind::kInput,
           {"tensor 'a'", "dtype 7 is not a string"});
  }
  SECTION("missing fields") {
    expect(make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), ErrorKind::kInput, {"tensor 'a'", "missing \"shape\""});
    expect(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), ErrorKind::kInput, {"missing \"data_offsets\""});
    expect(make_file(R"({"a":[1]})", 8), ErrorKind::kInput, {"tensor 'a'", "expected an object"});
  }
  SECTION("bad shape") {
    expect(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), ErrorKind::kInput,
           {"tensor 'a'", "shape [-2] must list non-negative integers"});
    expect(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", 8),
           ErrorKind::kInput, {"tensor 'a'", "needs more than 2^64"});
  }
  SECTION("offsets out of range") {
    expect(make_file("{" + a + "}", 4), ErrorKind::kInput, {"tensor 'a'", "data_offsets [0, 8] are out of range", "4 bytes"});
    expect(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), ErrorKind::kInput,
           {"tensor 'a'", "end before they begin"});
    expect(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), ErrorKind::kInput,
           {"tensor 'a'", "must be two non-negative integers"});
  }
  SECTION("offsets not matching dtype x shape") {
    expect(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), ErrorKind::kInput,
           {"tensor 'a'", "hold 8 bytes, but F32 [3] needs 12"});
  }
  SECTION("overlapping tensors") {
    expect(make_file("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), ErrorKind::kInput,
           {"tensor 'b'", "overlap tensor 'a'"});
  }
  SECTION("a hole between tensors") {
    expect(make_file("{" + a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})", 20), ErrorKind::kInput,
           {"tensor 'b'", "leave a hole", "[8, 12)"});
    expect(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), ErrorKind::kInput,
           {"tensor 'a'", "leave a hole", "[0, 4)"});
  }
  SECTION("bytes after the last tensor") {
    expect(make_file("{" + a + "}", 10), ErrorKind::kInput, {"10 bytes", "cover only 8", "2 bytes belong to no tensor"});
  }
  SECTION("a name given twice") {
    expect(make_file("{" + a + "," + a + "}", 8), ErrorKind::kInput, {"tensor 'a'", "appears twice"});
  }
  SECTION("bad metadata") {
    expect(make_file(R"({"__metadata__":{"step":300}})", 0), ErrorKind::kInput, {"__metadata__ entry 'step'", "not a string"});
    expect(make_file(R"({"__metadata__":"x"})", 0), ErrorKind::kInput, {"__metadata__ must be an object"});
  }
}

TEST_CASE("a failed save leaves no file behind", "[safetensors]") {
  TempDir dir;
  Tensor t = Tensor::full({4}, 1.0f);

  SECTION("into a directory that does not exist") {
    std::string path = dir.file("missing/dir/w.safetensors");
    try {
      save_safetensors(path, {{"t", t}});
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kIo);
      CHECK_THAT(e.what(), Contains(path) && Contains("No such file or directory"));
    }
    CHECK(dir.entries().empty());
  }
  SECTION("over a directory: the rename fails after the data is written") {
    std::filesystem::create_directory(dir.path / "taken");
    std::filesystem::create_directory(dir.path / "taken" / "inner");
    CHECK_THROWS_AS(save_safetensors(dir.file("taken"), {{"t", t}}), Error);
    CHECK(dir.entries() == std::vector<std::string>{"taken"});  // no temporary file left
  }
  SECTION("bad arguments keep an existing file intact") {
    std::string path = dir.file("w.safetensors");
    save_safetensors(path, {{"t", t}});
    auto before = read_bytes(path);
    try {
      save_safetensors(path, {{"t", t}, {"t", t}});
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kInput);
      CHECK_THAT(e.what(), Contains("tensor name 't' is given twice"));
    }
    CHECK_THROWS_WITH(save_safetensors(path, {{"__metadata__", t}}), Contains("reserved"));
    CHECK_THROWS_WITH(save_safetensors(path, {{"u", Tensor()}}), Contains("tensor 'u'") && Contains("undefined"));
    CHECK_THROWS_WITH(save_safetensors(path, {{std::string("bad\xff"), t}}), Contains("not valid UTF-8"));
    CHECK(read_bytes(path) == before);
    CHECK(dir.entries() == std::vector<std::string>{"w.safetensors"});
  }
}

// ---- weights that describe themselves (runtime/config/weights_config.h) --------------------------------

namespace {
// The message of the troupe::Error that `fn` throws, which must be of `kind`.
template <class Fn>
std::string error_of_kind(ErrorKind kind, Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    return e.what();
  }
  FAIL("no error");
  return {};
}
}  // namespace

TEST_CASE("the metadata reader reads the header only, with the same checks", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("w.safetensors");
  save_safetensors(path, {{"t", Tensor::full({4}, 1.0f)}}, {{"model.n_embd", "64"}});
  CHECK(load_safetensors_metadata(path) == std::map<std::string, std::string>{{"model.n_embd", "64"}});
  // A file cut inside its data still has a whole header, but is refused as load_safetensors would.
  auto bytes = read_bytes(path);
  bytes.resize(bytes.size() - 4);
  write_bytes(path, bytes);
  CHECK_THROWS_WITH(load_safetensors_metadata(path), Contains(path) && Contains("out of range"));
  CHECK_THROWS_WITH(load_safetensors_metadata(dir.file("none.safetensors")), Contains("not found"));
}

TEST_CASE("a weights file's metadata holds every model key and the troupe version", "[safetensors]") {
  RunConfig c = load_config(std::nullopt, {"model.kind=mlp", "model.mlp_hidden=64,32", "train.steps=7"});
  auto meta = weights_metadata(c);
  CHECK(meta.at("troupe.version") == troupe_version());
  CHECK(meta.at("format") == "pt");
  CHECK(meta.at("producer") == "troupe");
  CHECK(meta.at("model.kind") == "mlp");
  CHECK(meta.at("model.mlp_hidden") == "64,32");
  CHECK(meta.at("model.n_embd") == "256");
  for (const auto& [k, v] : meta) CHECK((k.rfind("model.", 0) == 0 || k == "troupe.version" || k == "format" || k == "producer"));
  CHECK(meta.count("train.steps") == 0);
  // Adopted into a default configuration, the metadata gives back the model.
  CHECK(adopt_model_config(RunConfig{}, {}, meta, "w.safetensors").model == c.model);
}

TEST_CASE("loading weights adopts unset model keys and refuses explicit ones that disagree", "[safetensors]") {
  RunConfig written;
  written.model.n_layer = 2;
  written.model.n_embd = 64;
  written.model.n_head = 8;
  const auto meta = weights_metadata(written);

  SECTION("keys not set explicitly come from the file, the rest of the config stays") {
    ConfigOrigins origins;
    RunConfig mine = load_config(std::nullopt, {"train.steps=3", "model.n_layer=2"}, &origins, "--set");
    CHECK(origins == ConfigOrigins{{"train.steps", "--set"}, {"model.n_layer", "--set"}});
    RunConfig adopted = adopt_model_config(mine, origins, meta, "w.safetensors");
    CHECK(adopted.model == written.model);
    CHECK(adopted.train.steps == 3);
  }
  SECTION("an explicit key that disagrees is a config error naming both values and where each came from") {
    ConfigOrigins origins{{"model.n_embd", "--set"}};
    RunConfig mine;
    mine.model.n_embd = 128;
    std::string msg = error_of_kind(ErrorKind::kConfig, [&] { adopt_model_config(mine, origins, meta, "w.safetensors"); });
    CHECK_THAT(msg, Contains("model.n_embd = 128 (--set) but w.safetensors was written with model.n_embd = 64"));
    origins = {{"model.n_embd", "run.toml"}};
    msg = error_of_kind(ErrorKind::kConfig, [&] { adopt_model_config(mine, origins, meta, "w.safetensors"); });
    CHECK_THAT(msg, Contains("model.n_embd = 128 (run.toml)"));
  }
  SECTION("an explicit key that agrees is fine") {
    RunConfig mine;
    mine.model.n_embd = 64;
    CHECK(adopt_model_config(mine, {{"model.n_embd", "--set"}}, meta, "w.safetensors").model == written.model);
  }
  SECTION("a file without model metadata (older troupe, other writers) changes nothing") {
    RunConfig mine;
    mine.model.n_layer = 3;
    CHECK(adopt_model_config(mine, {}, {}, "w.safetensors") == mine);
    CHECK(adopt_model_config(mine, {}, {{"format", "pt"}, {"model.kind", "gpt"}}, "w.safetensors") == mine);
    // Keys this version does not know are left to the shape checks on load.
    CHECK(adopt_model_config(mine, {}, {{"model.n_experts", "8"}}, "w.safetensors") == mine);
  }
  SECTION("a metadata value that is not valid for its key is a bad file, named") {
    auto bad = meta;
    bad["model.n_embd"] = "wide";
    std::string msg = error_of_kind(ErrorKind::kInput, [&] { adopt_model_config(RunConfig{}, {}, bad, "w.safetensors"); });
    CHECK_THAT(msg, Contains("w.safetensors") && Contains("model.n_embd = 'wide'") && Contains(std::string(troupe_version())));
  }
  SECTION("a combination the adopted keys make invalid is a config error naming the file") {
    // The file's n_embd = 64 with an explicit n_head = 5 that the file does not record.
    auto partial = meta;
    partial.erase("model.n_head");
    std::string msg = error_of_kind(ErrorKind::kConfig, [&] {
      RunConfig mine;
      mine.model.n_head = 5;
      mine.model.n_embd = 65;
      adopt_model_config(mine, {{"model.n_head", "--set"}}, partial, "w.safetensors");
    });
    CHECK_THAT(msg, Contains("w.safetensors") && Contains("not divisible by model.n_head"));
  }
  SECTION("from a file") {
    TempDir dir;
    std::string path = dir.file("w.safetensors");
    save_safetensors(path, {{"t", Tensor::full({1}, 1.0f)}}, meta);
    CHECK(adopt_model_config_from_weights(RunConfig{}, {}, path).model == written.model);
    CHECK(adopt_model_config_from_weights(RunConfig{}, {}, "") == RunConfig{});
  }
}
