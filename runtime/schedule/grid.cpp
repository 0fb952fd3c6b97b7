// Owns the text rendering of a simulated schedule as a step x stage grid.
#include "runtime/schedule/grid.h"

#include <algorithm>

#include "runtime/error.h"
#include "runtime/schedule/comm_pass.h"

namespace troupe::pipeline {

namespace {

std::string pad(const std::string& text, std::size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}

std::string pad_left(const std::string& text, std::size_t width) {
  return text.size() >= width ? text : std::string(width - text.size(), ' ') + text;
}

void append_cell(std::string& cell, const std::string& text) {
  if (!cell.empty()) cell += ' ';
  cell += text;
}

}  // namespace

std::string render_grid(const SimResult& result, const GridOptions& options) {
  const int p = result.layout.stages;
  const bool with_chunk = result.layout.virtual_stages > 1;
  for (const InstrRef& mark : options.marks)
    if (mark.stage < 0 || mark.stage >= p || mark.index >= result.schedule[static_cast<std::size_t>(mark.stage)].size())
      throw Error(ErrorKind::kInput, "render_grid: mark at stage " + std::to_string(mark.stage) + " instruction " +
                                         std::to_string(mark.index) + " is outside the schedule");
  auto marked = [&](int s, std::size_t i) {
    return std::find(options.marks.begin(), options.marks.end(), InstrRef{s, i}) != options.marks.end();
  };
  auto text = [&](int s, std::size_t i) {
    std::string t = to_string(result.schedule[static_cast<std::size_t>(s)][i], with_chunk);
    return marked(s, i) ? ">" + t + "<" : t;
  };

  long rows = 0;
  for (const auto& slots : result.slots)
    for (const Slot& slot : slots) rows = std::max({rows, slot.start + 1, slot.end});
  std::vector<std::vector<std::string>> cells(static_cast<std::size_t>(rows), std::vector<std::string>(p));
  std::vector<std::string> blocked(static_cast<std::size_t>(p));
  bool any_blocked = false;

  for (int s = 0; s < p; ++s) {
    const Program& program = result.schedule[static_cast<std::size_t>(s)];
    const auto& slots = result.slots[static_cast<std::size_t>(s)];
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const Instr& instr = program[i];
      if (is_communication(instr) && !options.show_communication && !marked(s, i)) continue;
      const Slot& slot = slots[i];
      append_cell(cells[static_cast<std::size_t>(slot.start)][static_cast<std::size_t>(s)], text(s, i));
      // A compute still running: repeat its name, unmarked, so the cell reads as busy.
      const std::string plain = to_string(instr, with_chunk);
      for (long r = slot.start + 1; r < slot.end; ++r)
        append_cell(cells[static_cast<std::size_t>(r)][static_cast<std::size_t>(s)], plain);
    }
    if (slots.size() < program.size()) {
      any_blocked = true;
      blocked[static_cast<std::size_t>(s)] = text(s, slots.size());
      for (std::size_t i = slots.size() + 1; i < program.size(); ++i)
        if (marked(s, i)) append_cell(blocked[static_cast<std::size_t>(s)], text(s, i));
    } else {
      blocked[static_cast<std::size_t>(s)] = "done";
    }
  }

  std::vector<std::string> header{"step"};
  for (int s = 0; s < p; ++s) header.push_back("stage " + std::to_string(s));
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  if (any_blocked) width[0] = std::max<std::size_t>(width[0], 7);
  width[0] = std::max(width[0], std::to_string(rows).size());
  for (auto& row : cells)
    for (int s = 0; s < p; ++s) {
      std::string& cell = row[static_cast<std::size_t>(s)];
      if (cell.empty()) cell = ".";
      width[static_cast<std::size_t>(s) + 1] = std::max(width[static_cast<std::size_t>(s) + 1], cell.size());
    }
  if (any_blocked)
    for (int s = 0; s < p; ++s)
      width[static_cast<std::size_t>(s) + 1] =
          std::max(width[static_cast<std::size_t>(s) + 1], blocked[static_cast<std::size_t>(s)].size());

  auto line = [&](const std::string& label, const std::vector<std::string>& row) {
    std::string out = pad_left(label, width[0]);
    for (std::size_t c = 0; c < row.size(); ++c) {
      out += "  ";
      out += c + 1 == row.size() ? row[c] : pad(row[c], width[c + 1]);
    }
    return out + "\n";
  };
  std::string out = line(header[0], std::vector<std::string>(header.begin() + 1, header.end()));
  for (long r = 0; r < rows; ++r) out += line(std::to_string(r), cells[static_cast<std::size_t>(r)]);
  if (any_blocked) out += line("blocked", blocked);
  return out;
}

std::string render_grid(const Schedule& schedule, int p, int v, const GridOptions& options, const Costs& costs) {
  bool has_comm = false;
  for (const Program& program : schedule)
    for (const Instr& instr : program) has_comm = has_comm || is_communication(instr);
  if (has_comm) return render_grid(simulate(schedule, p, v, costs), options);
  // Lower first; marks name compute-only positions, so move them to where those instructions went.
  const Schedule lowered = add_communication(schedule, p, v);
  GridOptions moved = options;
  for (InstrRef& mark : moved.marks) {
    if (mark.stage < 0 || mark.stage >= p || mark.index >= schedule[static_cast<std::size_t>(mark.stage)].size())
      throw Error(ErrorKind::kInput, "render_grid: mark at stage " + std::to_string(mark.stage) + " instruction " +
                                         std::to_string(mark.index) + " is outside the schedule");
    const Program& program = lowered[static_cast<std::size_t>(mark.stage)];
    std::size_t seen = 0;
    for (std::size_t i = 0; i < program.size(); ++i) {
      if (is_communication(program[i])) continue;
      if (seen++ == mark.index) {
        mark.index = i;
        break;
      }
    }
  }
  return render_grid(simulate(lowered, p, v, costs), moved);
}

}  // namespace troupe::pipeline
