// ForwardedRestarts: the text form of a rank process's restart report, and rank 0's log of them.
#include "runtime/supervision/forwarded_restarts.h"

#include <fmt/format.h>

#include <sstream>

namespace troupe::supervision {

namespace {
constexpr std::string_view kMagic = "troupe-restart";
}  // namespace

std::string encode_forwarded_restart(const ForwardedRestart& f) {
  const Restart& r = f.restart;
  // Doubles with 17 significant digits: read back exactly.
  return fmt::format("{} {} {} {} {:.17g} {:.17g} {:.17g} {} {}\n{}{}", kMagic, f.rank, f.index, r.step, r.at_s,
                     r.restarted_s, r.recovery_s, r.child.size(), r.cause.size(), r.child, r.cause);
}

std::optional<ForwardedRestart> decode_forwarded_restart(std::string_view text) {
  const std::size_t eol = text.find('\n');
  if (eol == std::string_view::npos || text.substr(0, kMagic.size() + 1) != std::string(kMagic) + " ") return std::nullopt;
  std::istringstream head{std::string(text.substr(kMagic.size() + 1, eol - kMagic.size() - 1))};
  ForwardedRestart f;
  std::size_t child_bytes = 0, cause_bytes = 0;
  std::string rest;
  if (!(head >> f.rank >> f.index >> f.restart.step >> f.restart.at_s >> f.restart.restarted_s >> f.restart.recovery_s >>
        child_bytes >> cause_bytes) ||
      (head >> rest) || f.rank < 0)
    return std::nullopt;
  const std::string_view body = text.substr(eol + 1);
  if (body.size() != child_bytes + cause_bytes) return std::nullopt;
  f.restart.child = std::string(body.substr(0, child_bytes));
  f.restart.cause = std::string(body.substr(child_bytes));
  return f;
}

namespace {
constexpr std::string_view kEscalationMagic = "troupe-escalation ";
}  // namespace

std::string encode_forwarded_escalation(const ForwardedEscalation& e) {
  return fmt::format("{}{}\n{}", kEscalationMagic, e.rank, e.escalation);
}

std::optional<ForwardedEscalation> decode_forwarded_escalation(std::string_view text) {
  const std::size_t eol = text.find('\n');
  if (eol == std::string_view::npos || text.substr(0, kEscalationMagic.size()) != kEscalationMagic) return std::nullopt;
  std::istringstream head{std::string(text.substr(kEscalationMagic.size(), eol - kEscalationMagic.size()))};
  ForwardedEscalation e;
  std::string rest;
  if (!(head >> e.rank) || (head >> rest) || e.rank < 0) return std::nullopt;
  e.escalation = std::string(text.substr(eol + 1));
  return e;
}

void ForwardedRestarts::add_escalation(long pid, const ForwardedEscalation& e) { escalations_.emplace_back(pid, e); }

std::optional<ForwardedEscalation> ForwardedRestarts::escalation_of(long pid) const {
  for (const auto& [p, e] : escalations_)
    if (p == pid) return e;
  return std::nullopt;
}

void ForwardedRestarts::add(long pid, const ForwardedRestart& r) {
  for (Entry& e : entries_)
    if (e.pid == pid && e.forwarded.index == r.index) {
      e.forwarded = r;
      return;
    }
  entries_.push_back({pid, r});
}

std::vector<Restart> ForwardedRestarts::restarts() const {
  std::vector<Restart> out;
  for (const Entry& e : entries_) {
    Restart r = e.forwarded.restart;
    r.child = fmt::format("rank {}/{}", e.forwarded.rank, r.child);
    out.push_back(std::move(r));
  }
  return out;
}

bool ForwardedRestarts::explains_reform(std::int64_t step) {
  for (Entry& e : entries_)
    if (const std::int64_t at = e.forwarded.restart.step; !e.explained && (at == step || at == step - 1 || at < 0)) {
      e.explained = true;
      return true;
    }
  return false;
}

}  // namespace troupe::supervision
