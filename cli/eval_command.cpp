// troupe eval: loads a model's weights and reports its loss (language models), accuracy (classifiers) or AUC (deepfm)
// on the held-out data, as troupe train's evaluations do.
#include "cli/eval_command.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "actors/recommender_job.h"
#include "models/trainer.h"

namespace troupe {

CLI::App* add_eval_subcommand(CLI::App& app, WeightsInput& in) {
  CLI::App* cmd = app.add_subcommand("eval", "Report a trained model's validation loss (gpt, lstm), test accuracy "
                                             "(mlp, cnn) or test AUC and log-loss (deepfm): troupe eval --weights "
                                             "w.safetensors");
  cmd->add_option("--weights", in.weights, "The model's weights (troupe train --save FILE)")->required();
  cmd->add_option("--config", in.config_path, "TOML file with config keys; model.* keys come from the weights file "
                                              "when not given");
  cmd->add_option("--set", in.sets, "Override one config key (repeatable): data.path, train.eval_batches, "
                                    "train.batch_size, ...");
  for (CLI::Option* option : cmd->get_options())
    if (option->get_expected_max() == 1) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->footer("Language models: train.eval_batches batches of train.batch_size sequences from the held-out tenth "
              "of the corpus; classifiers: the whole test set.");
  return cmd;
}

int run_eval(const WeightsInput& in) {
  const RunConfig config = config_for_weights(in);
  if (is_recommender(config.model.kind)) {
    const EvalStats e = evaluate_recommender_weights(config, in.weights);
    std::printf("%s: test AUC %.4f, log-loss %.4f over %lld click-log samples (data.test_samples)\n", in.weights.c_str(),
                e.auc, e.loss, static_cast<long long>(e.rows));
    return 0;
  }
  Trainer trainer(config);
  trainer.load_weights(in.weights);  // checks every name and shape first
  const EvalStats e = trainer.evaluate();
  if (is_language_model(config.model.kind))
    std::printf("%s: validation loss %.4f over %lld tokens (%s)\n", in.weights.c_str(), e.loss,
                static_cast<long long>(e.rows), trainer.dataset().describe().c_str());
  else
    std::printf("%s: test accuracy %.2f%%, loss %.4f over %lld images (%s)\n", in.weights.c_str(), 100.0 * e.accuracy,
                e.loss, static_cast<long long>(e.rows), trainer.dataset().describe().c_str());
  return 0;
}

}  // namespace troupe
