// Owns the tests of using trained weights: next-byte choice (temperature, top-k), troupe sample and troupe eval
// on GPT, LSTM and MLP weight files, and their refusals of bad input. (Token-for-token equality of greedy
// decoding with PyTorch: tests/torch_ref/sample_parity.py, CTest label parity.)
#include <catch2/catch.hpp>

#include <fstream>

#include "models/sampler.h"
#include "tests/temp_dir.h"
#include "tests/troupe_command.h"

using namespace troupe;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("pick_token: greedy, top-k and temperature", "[sample]") {
  const float probs[5] = {0.1f, 0.4f, 0.05f, 0.4f, 0.05f};
  CHECK(pick_token(probs, 5, 0.0, 0, 0.99) == 1);  // the most probable; ties go to the lower index
  CHECK(pick_token(probs, 5, 1.0, 1, 0.99) == 1);  // top-1 is greedy whatever the draw
  // top-2 keeps bytes 1 and 3 at 1/2 each: draws below 1/2 pick 1, above pick 3.
  CHECK(pick_token(probs, 5, 1.0, 2, 0.49) == 1);
  CHECK(pick_token(probs, 5, 1.0, 2, 0.51) == 3);
  // Temperature 1 follows p: cumulative over the order 1, 3, 0, 2, 4 is 0.4, 0.8, 0.9, 0.95, 1.0.
  CHECK(pick_token(probs, 5, 1.0, 0, 0.85) == 0);
  CHECK(pick_token(probs, 5, 1.0, 0, 0.97) == 4);
  // A low temperature sharpens: at 0.1, byte 0 holds (0.1/0.4)^10 / 2 of the mass, about 5e-7.
  CHECK(pick_token(probs, 5, 0.1, 0, 0.9999) == 3);
}

TEST_CASE("troupe sample and troupe eval use weights files of the gpt, the lstm and the mlp", "[sample][cli]") {
  TempDir dir;
  const std::string gpt = dir.file("gpt.safetensors"), lstm = dir.file("lstm.safetensors");
  REQUIRE(run_troupe(dir.path, "train --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set "
                               "model.block_size=16 --steps 0 --save " + gpt).code == 0);
  REQUIRE(run_troupe(dir.path, "train --set model.kind=lstm --set model.n_layer=1 --set model.n_embd=32 --set "
                               "model.block_size=16 --steps 0 --save " + lstm).code == 0);
  for (const std::string& w : {gpt, lstm}) {
    INFO(w);
    // The model's shape comes from the file; greedy decoding and a seeded draw are reproducible.
    const TroupeRun greedy = run_troupe(dir.path, "sample --weights " + w + " --prompt 'Hello' --tokens 20 --temperature 0");
    INFO(greedy.err);
    REQUIRE(greedy.code == 0);
    CHECK_THAT(greedy.out, StartsWith("Hello"));
    CHECK(greedy.out.size() == 5 + 20 + 1);
    CHECK(run_troupe(dir.path, "sample --weights " + w + " --prompt 'Hello' --tokens 20 --temperature 0").out == greedy.out);
    const std::string drawn = "sample --weights " + w + " --tokens 40 --top-k 50 --seed ";
    const TroupeRun a = run_troupe(dir.path, drawn + "1"), b = run_troupe(dir.path, drawn + "1"),
                    c = run_troupe(dir.path, drawn + "2");
    REQUIRE(a.code == 0);
    CHECK(a.out == b.out);
    CHECK(a.out != c.out);  // 40 draws among 50 near-uniform bytes: equal only by a 50^-40 chance

    const TroupeRun e = run_troupe(dir.path, "eval --weights " + w + " --set train.eval_batches=2");
    INFO(e.err);
    REQUIRE(e.code == 0);
    CHECK_THAT(e.out, Contains("validation loss 5.5"));  // untrained: about log(256) = 5.55
    CHECK_THAT(e.out, Contains("over 512 tokens"));      // 2 batches of 16 sequences of 16 bytes
  }

  SECTION("bad input: one line saying what and where, exit status 2") {
    const TroupeRun missing = run_troupe(dir.path, "sample --weights " + dir.file("none.safetensors"));
    CHECK(missing.code == 2);
    CHECK_THAT(missing.err, Contains("none.safetensors: no such file"));
    std::ofstream(dir.file("cut.safetensors"), std::ios::binary) << std::string("\x40\0\0\0\0\0\0\0{", 9);
    for (const char* verb : {"sample", "eval"}) {
      const TroupeRun cut = run_troupe(dir.path, std::string(verb) + " --weights " + dir.file("cut.safetensors"));
      CHECK(cut.code == 2);
      CHECK_THAT(cut.err, Contains("cut.safetensors: not a valid safetensors file"));
    }
    const TroupeRun shape = run_troupe(dir.path, "eval --weights " + lstm + " --set model.n_embd=64");
    CHECK(shape.code == 2);
    CHECK_THAT(shape.err, Contains("model.n_embd = 64 (--set) but"));
    CHECK_THAT(shape.err, Contains("was written with model.n_embd = 32"));
    const std::string mlp = dir.file("mlp.safetensors");
    REQUIRE(run_troupe(dir.path, "train --set model.kind=mlp --set model.mlp_hidden=8 --steps 0 --save " + mlp).code == 0);
    const TroupeRun not_lm = run_troupe(dir.path, "sample --weights " + mlp);
    CHECK(not_lm.code == 2);
    CHECK_THAT(not_lm.err, Contains("holds model.kind = mlp: use troupe eval"));
    CHECK(run_troupe(dir.path, "sample --weights " + gpt + " --temperature -1").code == 2);
  }
}
