// Owns the typed choices of a run: every option that is one of a fixed set of names (model.kind,
// parallel.schedule, ...) as an enum, and the one table that maps each enum to its names.
//
// A choice is parsed once, when the configuration is read (config_schema.cpp binds each enum field to
// its table); from then on code switches on the enum and never compares option names as strings.
// Names appear again only where a person reads them: help, messages, logs (name_of).
//
// Adding a choice: add the enumerator and its row in the table below; the schema's help, its
// "expected one of" message and the TOML writer pick it up from the table.
#pragma once

#include <array>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace troupe {

// deepfm: the click-log recommender on parameter servers (models/wide_deep.h, actors/recommender_job.h).
enum class ModelKind { gpt, mlp, cnn, lstm, deepfm };
enum class DataOrder { shuffled, sequential };
enum class LrScheduleKind { constant, cosine };
enum class OptimKind { sgd, adam, adamw, rmsprop };
// layer: naive model parallelism (one micro-batch through every stage); the rest are pipelines.
enum class ScheduleKind { one_f_one_b, gpipe, interleaved, layer };
enum class GradientExchange { ring, alltoall, ps };
// inproc: ranks are threads of one process; tcp: ranks are processes over loopback sockets; shm: ranks
// are processes of this host exchanging data through shared memory (set up over tcp's rendezvous).
enum class TransportKind { inproc, tcp, shm };
// Whether data-parallel ranks of this transport are processes of their own (tcp, shm) rather than threads.
constexpr bool ranks_are_processes(TransportKind t) { return t != TransportKind::inproc; }
// A multi-host job's ranks that share a host (comm.same_host): shm talks through shared memory between them
// (TCP only between hosts, net/routed/routed_transport.h); tcp keeps every pair on TCP.
enum class SameHostLinks { shm, tcp };
// comm.integrity: whether a TCP link authenticates every frame after the handshake (net/tcp/link_security.h).
// automatic ("auto"): on for links whose peer is not on loopback; on: every link; off: no link asks for it.
enum class IntegrityPolicy { automatic, on, off };
// sync: every worker's push joins one update; async: each push updates at once; ssp: bounded staleness.
enum class PsMode { sync, async, ssp };
// A step whose loss or gradients hold NaN or Inf: stop the run (naming the step and the parameter), or
// skip its update and go on.
enum class NonfiniteAction { stop, skip };
// The recommender over the click log's field embeddings (models/wide_deep.h): Wide & Deep (hashed
// crosses in the wide part) or DeepFM (per-field first-order weights plus a factorisation machine).
enum class RecommenderKind { wide_deep, deepfm };
// The matrix products' operands: f32, or rounded to bf16 with f32 sums (torch.autocast's recipe for
// Linear layers; weights, gradients, optimizer state and the loss stay f32).
enum class Precision { f32, bf16 };

// Language models (gpt, lstm) train on text, one loss per token, and are judged by their loss; the
// recommender (deepfm) predicts clicks and is judged by its test AUC and log-loss; the others classify
// images and are judged by their accuracy.
constexpr bool is_language_model(ModelKind kind) { return kind == ModelKind::gpt || kind == ModelKind::lstm; }
constexpr bool is_recommender(ModelKind kind) { return kind == ModelKind::deepfm; }

// The names of enum E, in the order help lists them. Specialised once per choice below.
template <class E>
struct ChoiceNames;

template <class E>
concept Choice = requires { ChoiceNames<E>::table; };

#define TROUPE_CHOICE_NAMES(E, ...)                                                                  \
  template <>                                                                                        \
  struct ChoiceNames<E> {                                                                            \
    static constexpr auto table = std::to_array<std::pair<E, std::string_view>>({__VA_ARGS__});     \
  }

TROUPE_CHOICE_NAMES(ModelKind, {ModelKind::gpt, "gpt"}, {ModelKind::mlp, "mlp"}, {ModelKind::cnn, "cnn"},
                    {ModelKind::lstm, "lstm"}, {ModelKind::deepfm, "deepfm"});
TROUPE_CHOICE_NAMES(DataOrder, {DataOrder::shuffled, "shuffled"}, {DataOrder::sequential, "sequential"});
TROUPE_CHOICE_NAMES(LrScheduleKind, {LrScheduleKind::constant, "constant"}, {LrScheduleKind::cosine, "cosine"});
TROUPE_CHOICE_NAMES(OptimKind, {OptimKind::sgd, "sgd"}, {OptimKind::adam, "adam"}, {OptimKind::adamw, "adamw"},
                    {OptimKind::rmsprop, "rmsprop"});
TROUPE_CHOICE_NAMES(ScheduleKind, {ScheduleKind::one_f_one_b, "1f1b"}, {ScheduleKind::gpipe, "gpipe"},
                    {ScheduleKind::interleaved, "interleaved"}, {ScheduleKind::layer, "layer"});
TROUPE_CHOICE_NAMES(GradientExchange, {GradientExchange::ring, "ring"}, {GradientExchange::alltoall, "alltoall"},
                    {GradientExchange::ps, "ps"});
TROUPE_CHOICE_NAMES(TransportKind, {TransportKind::inproc, "inproc"}, {TransportKind::tcp, "tcp"},
                    {TransportKind::shm, "shm"});
TROUPE_CHOICE_NAMES(SameHostLinks, {SameHostLinks::shm, "shm"}, {SameHostLinks::tcp, "tcp"});
TROUPE_CHOICE_NAMES(IntegrityPolicy, {IntegrityPolicy::automatic, "auto"}, {IntegrityPolicy::on, "on"},
                    {IntegrityPolicy::off, "off"});
TROUPE_CHOICE_NAMES(PsMode, {PsMode::sync, "sync"}, {PsMode::async, "async"}, {PsMode::ssp, "ssp"});
TROUPE_CHOICE_NAMES(NonfiniteAction, {NonfiniteAction::stop, "stop"}, {NonfiniteAction::skip, "skip"});
TROUPE_CHOICE_NAMES(RecommenderKind, {RecommenderKind::wide_deep, "wide_deep"}, {RecommenderKind::deepfm, "deepfm"});
TROUPE_CHOICE_NAMES(Precision, {Precision::f32, "f32"}, {Precision::bf16, "bf16"});

#undef TROUPE_CHOICE_NAMES

// The name of a choice: name_of(ScheduleKind::one_f_one_b) == "1f1b".
template <Choice E>
constexpr std::string_view name_of(E value) {
  for (const auto& [e, name] : ChoiceNames<E>::table)
    if (e == value) return name;
  return "?";  // unreachable for a value of the enum: every enumerator has a row
}

// The choice named `name`, or nullopt (the caller says which key and lists choice_names<E>()).
template <Choice E>
constexpr std::optional<E> parse_choice(std::string_view name) {
  for (const auto& [e, n] : ChoiceNames<E>::table)
    if (n == name) return e;
  return std::nullopt;
}

// Every name of E, in table order.
template <Choice E>
std::vector<std::string> choice_names() {
  std::vector<std::string> out;
  for (const auto& [e, name] : ChoiceNames<E>::table) out.emplace_back(name);
  return out;
}

// Streams print a choice by its name (error messages, test output).
template <Choice E>
std::ostream& operator<<(std::ostream& out, E value) {
  return out << name_of(value);
}

}  // namespace troupe

// fmt prints a choice by its name: fmt::format("{}", ScheduleKind::gpipe) == "gpipe".
template <troupe::Choice E>
struct fmt::formatter<E> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(E value, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(troupe::name_of(value), ctx);
  }
};
