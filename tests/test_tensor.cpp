// Owns the Tensor, bf16 and Device tests: zero-copy slices and views, clones, bf16 rounding, device strings, shape_str.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "runtime/device.h"
#include "runtime/dtype.h"
#include "runtime/tensor.h"

using namespace troupe;

namespace {

Tensor iota_tensor(const Shape& shape) {
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  std::iota(v.begin(), v.end(), 0.0f);
  return Tensor::from_f32(shape, v);
}

float from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }

}  // namespace

// ---------------------------------------------------------------- slices, views, clones

TEST_CASE("slice along the leading dimension is zero-copy", "[tensor]") {
  const Tensor t = iota_tensor({5, 3, 2});
  const Tensor s = t.slice(1, 4);
  CHECK(s.shape() == Shape{3, 3, 2});
  CHECK(s.dtype() == DType::f32);
  CHECK(s.shares_storage_with(t));
  CHECK(s.f32() == t.f32() + 6);                 // one leading row = 3 * 2 floats
  CHECK(s.raw() == static_cast<char*>(t.raw()) + 24);  // in bytes
  CHECK(s.f32()[0] == 6.0f);
  CHECK(s.f32()[s.numel() - 1] == 23.0f);
  // Writes through the slice are seen by the parent, and the other way round.
  s.f32()[0] = -1.0f;
  CHECK(t.f32()[6] == -1.0f);
  t.f32()[23] = -2.0f;
  CHECK(s.f32()[17] == -2.0f);

  SECTION("a slice of a slice offsets again") {
    const Tensor ss = s.slice(1, 3);
    CHECK(ss.shape() == Shape{2, 3, 2});
    CHECK(ss.shares_storage_with(t));
    CHECK(ss.f32() == t.f32() + 12);
  }
  SECTION("empty and full slices") {
    const Tensor e = t.slice(2, 2);
    CHECK(e.shape() == Shape{0, 3, 2});
    CHECK(e.numel() == 0);
    const Tensor all = t.slice(0, 5);
    CHECK(all.f32() == t.f32());
    CHECK(all.shape() == t.shape());
  }
  SECTION("i32 and bf16 slices offset by their own element size") {
    const Tensor ids = Tensor::from_i32({4, 2}, std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
    CHECK(ids.slice(3, 4).i32() == ids.i32() + 6);
    CHECK(ids.slice(3, 4).i32()[1] == 7);
    const Tensor h = t.to(DType::bf16);
    CHECK(h.slice(2, 3).bf16() == h.bf16() + 12);
  }
  SECTION("out-of-range slices are refused") {
    CHECK_THROWS_AS(t.slice(0, 6), InvariantError);
    CHECK_THROWS_AS(t.slice(3, 2), InvariantError);
    CHECK_THROWS_AS(t.slice(-1, 2), InvariantError);
  }
}

TEST_CASE("view shares storage with another shape of the same size", "[tensor]") {
  const Tensor t = iota_tensor({2, 3, 4});
  const Tensor v = t.view({6, 4});
  CHECK(v.shape() == Shape{6, 4});
  CHECK(v.shares_storage_with(t));
  CHECK(v.f32() == t.f32());
  v.f32()[5] = 100.0f;
  CHECK(t.f32()[5] == 100.0f);
  // A view of a slice keeps the slice's offset.
  const Tensor sv = t.slice(1, 2).view({12});
  CHECK(sv.f32() == t.f32() + 12);
  CHECK(sv.f32()[0] == 12.0f);
  CHECK_THROWS_AS(t.view({5, 5}), InvariantError);
  CHECK(t.shape() == Shape{2, 3, 4});  // the original is untouched
}

TEST_CASE("clone copies the data: clone and original are independent", "[tensor]") {
  const Tensor t = iota_tensor({3, 4});
  const Tensor c = t.clone();
  CHECK_FALSE(c.shares_storage_with(t));
  CHECK(c.shape() == t.shape());
  CHECK(c.to_vector() == t.to_vector());
  c.f32()[0] = 42.0f;
  CHECK(t.f32()[0] == 0.0f);
  t.f32()[1] = -7.0f;
  CHECK(c.f32()[1] == 1.0f);
  // Cloning a slice copies only the slice.
  const Tensor cs = t.slice(1, 3).clone();
  CHECK(cs.shape() == Shape{2, 4});
  CHECK(cs.f32()[0] == 4.0f);
  CHECK_FALSE(cs.shares_storage_with(t));
  // Copying the Tensor value copies the reference.
  const Tensor alias = t;
  CHECK(alias.shares_storage_with(t));
}

TEST_CASE("constructors, fill, copy_from and dtype checks", "[tensor]") {
  const Tensor z = Tensor::zeros({2, 3});
  for (float v : z.to_vector()) CHECK(v == 0.0f);
  const Tensor f = Tensor::full({4}, 2.5f);
  CHECK(f.to_vector() == std::vector<float>(4, 2.5f));
  CHECK(reinterpret_cast<std::uintptr_t>(Tensor::empty({7}).raw()) % 64 == 0);
  Tensor dst = Tensor::zeros({2, 3});
  dst.copy_from(iota_tensor({2, 3}));
  CHECK(dst.to_vector() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK_THROWS_AS(dst.copy_from(iota_tensor({3, 2})), InvariantError);
  CHECK_THROWS_AS(Tensor::from_f32({2, 2}, std::vector<float>{1, 2, 3}), InvariantError);
  CHECK_THROWS_AS(z.i32(), InvariantError);  // typed access checks the dtype
  CHECK(Tensor::from_i32({2}, std::vector<std::int32_t>{1, 2}).nbytes() == 8);
  CHECK(Tensor::empty({3}, DType::bf16).nbytes() == 6);
  CHECK(Tensor::empty({3}, DType::i64).nbytes() == 24);
}

// ---------------------------------------------------------------- bf16

TEST_CASE("f32 -> bf16 rounds to nearest, ties to even", "[tensor]") {
  struct Case {
    std::uint32_t f32_bits;
    std::uint16_t bf16_bits;
    const char* why;
  };
  const std::vector<Case> cases = {
      {0x3f800000u, 0x3f80, "1.0 is exact"},
      {0x3f807fffu, 0x3f80, "just below half an ulp: down"},
      {0x3f808000u, 0x3f80, "exactly half, even below: down to even"},
      {0x3f808001u, 0x3f81, "just above half: up"},
      {0x3f818000u, 0x3f82, "exactly half, odd below: up to even"},
      {0x3f81ffffu, 0x3f82, "nearly a full ulp: up"},
      {0xbf808000u, 0xbf80, "negative tie: to even (magnitude down)"},
      {0xbf818000u, 0xbf82, "negative tie: to even (magnitude up)"},
      {0x3fff8000u, 0x4000, "tie that carries into the exponent"},
      {0x7f7fffffu, 0x7f80, "largest float rounds to infinity"},
      {0x7f800000u, 0x7f80, "+inf stays +inf"},
      {0xff800000u, 0xff80, "-inf stays -inf"},
      {0x00000000u, 0x0000, "+0"},
      {0x80000000u, 0x8000, "-0 keeps its sign"},
      {0x00008000u, 0x0000, "subnormal tie: to even (zero)"},
      {0x00018000u, 0x0002, "subnormal tie: to even (up)"},
  };
  for (const Case& c : cases) {
    INFO(c.why << ": f32 bits 0x" << std::hex << c.f32_bits);
    CHECK(f32_to_bf16(from_bits(c.f32_bits)) == c.bf16_bits);
  }
}

TEST_CASE("bf16 NaN stays NaN, whatever its payload", "[tensor]") {
  // A naive round would carry these into infinity (0x7f800001 + 0x7fff) or wrap to zero (0xffffffff).
  for (std::uint32_t bits : {0x7fc00000u, 0x7f800001u, 0x7f80ffffu, 0x7fffffffu, 0xffffffffu, 0xff800001u, 0xffc00000u}) {
    INFO("NaN bits 0x" << std::hex << bits);
    const float nan = from_bits(bits);
    REQUIRE(std::isnan(nan));
    const std::uint16_t h = f32_to_bf16(nan);
    CHECK(std::isnan(bf16_to_f32(h)));
    CHECK((h >> 15) == (bits >> 31));  // sign kept
  }
}

TEST_CASE("bf16 -> f32 -> bf16 is the identity on every non-NaN pattern", "[tensor]") {
  int mismatches = 0;
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = bf16_to_f32(static_cast<std::uint16_t>(h));
    CHECK(std::bit_cast<std::uint32_t>(f) == (h << 16));  // widening just appends zero bits
    if (std::isnan(f)) {
      mismatches += !std::isnan(bf16_to_f32(f32_to_bf16(f)));
    } else {
      mismatches += f32_to_bf16(f) != h;
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("Tensor::to converts between f32 and bf16", "[tensor]") {
  const std::vector<float> values = {1.0f, from_bits(0x3f808001u), -3.140625f, 0.0f, 1e30f, from_bits(0x7fc00000u)};
  const Tensor t = Tensor::from_f32({2, 3}, values);
  const Tensor h = t.to(DType::bf16);
  CHECK(h.dtype() == DType::bf16);
  CHECK(h.shape() == t.shape());
  CHECK(h.nbytes() == 12);
  for (std::size_t i = 0; i < values.size(); ++i) CHECK(h.bf16()[i] == f32_to_bf16(values[i]));
  const std::vector<float> back = h.to_vector();  // bf16 read back as f32
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == from_bits(0x3f810000u));
  CHECK(back[2] == -3.140625f);  // exactly representable in bf16
  CHECK(std::isnan(back[5]));
  const Tensor same = t.to(DType::f32);
  CHECK_FALSE(same.shares_storage_with(t));
  CHECK_THROWS_AS(t.to(DType::i32), InvariantError);
}

// ---------------------------------------------------------------- Device and shape_str

TEST_CASE("Device::parse accepts cpu, cpu:N, cuda, cuda:N", "[tensor]") {
  CHECK(Device::parse("cpu") == Device::cpu(0));
  CHECK(Device::parse("cpu:0") == Device::cpu(0));
  CHECK(Device::parse("cpu:2") == Device::cpu(2));
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK(Device::parse("cuda:12").index == 12);
  CHECK(Device::parse("cuda:1").kind == DeviceKind::cuda);
  CHECK(Device::cuda(1).str() == "cuda:1");
  CHECK(Device::cpu().str() == "cpu:0");
  CHECK(Device::parse(Device::cuda(7).str()) == Device::cuda(7));
  CHECK(Device::cpu().is_cpu());
  CHECK_FALSE(Device::cuda().is_cpu());
}

TEST_CASE("Device::parse rejects other strings with a message naming them", "[tensor]") {
  for (const char* text : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:1x", "cuda:x", "cuda:+1", " cpu", "cpu:0:1", "cud",
                           "cuda 1", "cpu:1.5"}) {
    INFO("text '" << text << "'");
    try {
      Device::parse(text);
      FAIL("accepted '" << text << "'");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kInput);
      CHECK_THAT(e.what(), Catch::Contains("'" + std::string(text) + "'"));
      CHECK_THAT(e.what(), Catch::Contains("cuda:N"));  // says what would be accepted
    }
  }
}

TEST_CASE("shape_str prints shapes as (a, b, c) in brackets", "[tensor]") {
  CHECK(shape_str({}) == "[]");
  CHECK(shape_str({0}) == "[0]");
  CHECK(shape_str({7}) == "[7]");
  CHECK(shape_str({2, 3, 4}) == "[2, 3, 4]");
  CHECK(shape_str({1, 50257}) == "[1, 50257]");
  CHECK(shape_numel({2, 3, 4}) == 24);
  CHECK(shape_numel({}) == 1);
  CHECK(shape_numel({5, 0}) == 0);
}
