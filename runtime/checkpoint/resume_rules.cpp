// check_resumable: the fixed keys compared through the config schema, so a new model.* key is covered.
#include "runtime/checkpoint/resume_rules.h"

#include <fmt/format.h>

#include "runtime/config/config_schema.h"
#include "runtime/error.h"

namespace troupe {

void check_resumable(const RunConfig& resumed, const RunConfig& written, const std::string& checkpoint) {
  for (const ConfigKey& key : config_schema()) {
    const bool model = key.name.rfind("model.", 0) == 0;
    if (!model && key.name != "optim.kind") continue;
    const auto now = key.get(resumed), then = key.get(written);
    const std::string a = now ? config_value_to_text(*now) : "unset", b = then ? config_value_to_text(*then) : "unset";
    if (a == b) continue;
    throw Error(ErrorKind::kConfig,
                fmt::format("{} = {} for this run, but the checkpoint {} was written with {} = {}: {} cannot change on "
                            "resume; remove the setting (the checkpoint's value is then used) or start a fresh run",
                            key.name, a, checkpoint, key.name, b,
                            model ? "the model (its kind and shape)" : "the optimizer kind"));
  }
  // DeepFM's click log is made from train.seed (runtime/data/click_log.h): another seed is another data set.
  if (is_recommender(written.model.kind) && resumed.train.seed != written.train.seed)
    throw Error(ErrorKind::kConfig,
                fmt::format("train.seed = {} for this run, but the checkpoint {} was written with train.seed = {}: for "
                            "model.kind = {} the seed makes the click log itself, so it cannot change on resume; remove "
                            "the setting (the checkpoint's value is then used) or start a fresh run",
                            resumed.train.seed, checkpoint, written.train.seed, name_of(written.model.kind)));
}

}  // namespace troupe
