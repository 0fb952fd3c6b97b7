// Owns the text form of pipeline instructions: printing and strict parsing with positioned errors.
#include "runtime/schedule/instr.h"

#include <array>
#include <charconv>
#include <limits>

#include "runtime/error.h"

namespace troupe::pipeline {

namespace {


// Kind keywords, longest first so that "SEND_F" is not read as something shorter.
enum class Kind { kSendF, kRecvF, kSendB, kRecvB, kF, kB };
struct Keyword {
  std::string_view text;
  Kind kind;
};
constexpr std::array<Keyword, 6> kKeywords{{{"SEND_F", Kind::kSendF},
                                            {"RECV_F", Kind::kRecvF},
                                            {"SEND_B", Kind::kSendB},
                                            {"RECV_B", Kind::kRecvB},
                                            {"F", Kind::kF},
                                            {"B", Kind::kB}}};

constexpr std::string_view kAccepted =
    "expected [chunk]F<mb>, [chunk]B<mb>, [chunk]SEND_F<mb>, [chunk]RECV_F<mb>, [chunk]SEND_B<mb>, "
    "[chunk]RECV_B<mb> or STEP, with chunk and mb non-negative decimal integers (e.g. F3, 1B0, SEND_F2)";

// Parses a non-negative int from all of `digits`; false when empty, not all digits, or too large.
bool parse_index(std::string_view digits, int& out) {
  if (digits.empty()) return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  return ec == std::errc() && ptr == digits.data() + digits.size();
}

// Returns an error message fragment, or empty on success (then `out` holds the instruction).
std::string try_parse(std::string_view token, Instr& out) {
  if (token == "STEP") {
    out = OptimizerStep{};
    return {};
  }
  std::size_t digits = 0;
  while (digits < token.size() && token[digits] >= '0' && token[digits] <= '9') ++digits;
  int chunk = 0;
  if (digits > 0 && !parse_index(token.substr(0, digits), chunk)) return "chunk index out of range";
  std::string_view rest = token.substr(digits);
  for (const Keyword& kw : kKeywords) {
    if (!rest.starts_with(kw.text)) continue;
    int mb = 0;
    std::string_view number = rest.substr(kw.text.size());
    if (number.empty()) return "missing micro-batch number";
    if (!parse_index(number, mb)) return "micro-batch must be a non-negative decimal integer";
    switch (kw.kind) {
      case Kind::kF: out = Forward{mb, chunk}; break;
      case Kind::kB: out = Backward{mb, chunk}; break;
      case Kind::kSendF: out = SendActivation{mb, chunk}; break;
      case Kind::kRecvF: out = RecvActivation{mb, chunk}; break;
      case Kind::kSendB: out = SendGrad{mb, chunk}; break;
      case Kind::kRecvB: out = RecvGrad{mb, chunk}; break;
    }
    return {};
  }
  return "unknown instruction kind";
}

[[noreturn]] void throw_parse_error(std::string_view token, std::string_view why, std::size_t line,
                                    std::size_t column, std::size_t token_index) {
  std::string where;
  if (line > 0) where += "line " + std::to_string(line) + ", ";
  where += "column " + std::to_string(column) + " (instruction " + std::to_string(token_index) + ")";
  throw Error(ErrorKind::kInput, "invalid pipeline instruction \"" + std::string(token) + "\" at " + where +
                                     ": " + std::string(why) + "; " + std::string(kAccepted));
}

// Parses one line into a program; `line` is 0 for a lone program (not shown in messages).
Program parse_line(std::string_view text, std::size_t line) {
  Program program;
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
      continue;
    }
    std::size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n') ++i;
    std::string_view token = text.substr(start, i - start);
    Instr instr;
    std::string why = try_parse(token, instr);
    if (!why.empty()) throw_parse_error(token, why, line, start + 1, program.size() + 1);
    program.push_back(instr);
  }
  return program;
}

}  // namespace

bool is_compute(const Instr& instr) {
  return std::holds_alternative<Forward>(instr) || std::holds_alternative<Backward>(instr);
}

bool is_communication(const Instr& instr) {
  return std::holds_alternative<SendActivation>(instr) || std::holds_alternative<RecvActivation>(instr) ||
         std::holds_alternative<SendGrad>(instr) || std::holds_alternative<RecvGrad>(instr);
}

int microbatch_of(const Instr& instr) {
  return std::visit(Overloaded{[](const OptimizerStep&) { return -1; }, [](const auto& i) { return i.mb; }}, instr);
}

int chunk_of(const Instr& instr) {
  return std::visit(Overloaded{[](const OptimizerStep&) { return -1; }, [](const auto& i) { return i.chunk; }},
                    instr);
}

std::string to_string(const Instr& instr, bool with_chunk) {
  auto prefixed = [with_chunk](int chunk, std::string_view kind, int mb) {
    std::string out = (with_chunk || chunk != 0) ? std::to_string(chunk) : std::string();
    out += kind;
    out += std::to_string(mb);
    return out;
  };
  return std::visit(Overloaded{
                        [&](const Forward& i) { return prefixed(i.chunk, "F", i.mb); },
                        [&](const Backward& i) { return prefixed(i.chunk, "B", i.mb); },
                        [&](const SendActivation& i) { return prefixed(i.chunk, "SEND_F", i.mb); },
                        [&](const RecvActivation& i) { return prefixed(i.chunk, "RECV_F", i.mb); },
                        [&](const SendGrad& i) { return prefixed(i.chunk, "SEND_B", i.mb); },
                        [&](const RecvGrad& i) { return prefixed(i.chunk, "RECV_B", i.mb); },
                        [](const OptimizerStep&) { return std::string("STEP"); },
                    },
                    instr);
}

std::string to_string(const Program& program, bool with_chunk) {
  std::string out;
  for (std::size_t i = 0; i < program.size(); ++i) {
    if (i > 0) out += ' ';
    out += to_string(program[i], with_chunk);
  }
  return out;
}

std::string to_string(const Schedule& schedule, bool with_chunk) {
  std::string out;
  for (const Program& program : schedule) {
    out += to_string(program, with_chunk);
    out += '\n';
  }
  return out;
}

Instr parse_instr(std::string_view token) {
  Instr instr;
  std::string why = try_parse(token, instr);
  if (!why.empty()) throw_parse_error(token, why, 0, 1, 1);
  return instr;
}

Program parse_program(std::string_view text) { return parse_line(text, 0); }

Schedule parse_schedule(std::string_view text) {
  Schedule schedule;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    schedule.push_back(parse_line(text.substr(start, end - start), schedule.size() + 1));
    start = end + 1;
  }
  return schedule;
}

}  // namespace troupe::pipeline
