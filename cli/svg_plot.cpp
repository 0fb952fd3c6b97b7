// Inline SVG plots: "nice" tick steps (1, 2 or 5 times a power of ten), coordinates rounded to 0.1 px
// so the page stays small.
#include "cli/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace troupe::svg {

namespace {
constexpr int kLeft = 70, kRight = 20, kTop = 34, kBottom = 46;

double nice_step(double range, int ticks) {
  const double raw = range / std::max(1, ticks);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * p;
}

std::string tick_text(double v) {
  if (v != 0.0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-3)) return fmt::format("{:.2g}", v);
  return fmt::format("{:.6g}", v);
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  void widen() {
    if (!(lo < hi)) {
      const double pad = std::fabs(lo) > 0 ? std::fabs(lo) * 0.05 : 1.0;
      lo -= pad;
      hi += pad;
    }
  }
};
}  // namespace

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string line_plot(const PlotSpec& spec, const std::vector<Series>& series) {
  Range xr, yr;
  for (const Series& s : series)
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) {
        xr.add(x);
        yr.add(y);
      }
  const bool empty = !std::isfinite(xr.lo);
  if (empty) xr = {0, 1}, yr = {0, 1};
  xr.widen();
  yr.widen();
  const double ystep = nice_step(yr.hi - yr.lo, 5), xstep = nice_step(xr.hi - xr.lo, 8);
  yr.lo = std::floor(yr.lo / ystep) * ystep;
  yr.hi = std::ceil(yr.hi / ystep) * ystep;
  const double pw = spec.width - kLeft - kRight, ph = spec.height - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - xr.lo) / (xr.hi - xr.lo) * pw; };
  auto py = [&](double y) { return kTop + (1.0 - (y - yr.lo) / (yr.hi - yr.lo)) * ph; };

  std::string out = fmt::format(
      "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"{2}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{3}"
      "</text>\n",
      spec.width, spec.height, kLeft, escape(spec.title));
  // Grid and ticks.
  for (double y = yr.lo; y <= yr.hi + ystep * 1e-9; y += ystep)
    out += fmt::format("<line x1=\"{0}\" x2=\"{1:.1f}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#e4e4e4\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                       kLeft, kLeft + pw, py(y), kLeft - 6, py(y) + 4, tick_text(y));
  for (double x = std::ceil(xr.lo / xstep) * xstep; x <= xr.hi + xstep * 1e-9; x += xstep)
    out += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2:.1f}\" stroke=\"#e4e4e4\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
                       px(x), kTop, kTop + ph, kTop + ph + 16, tick_text(x));
  out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#888\"/>\n", kLeft,
                     kTop, pw, ph);
  out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", kLeft + pw / 2, spec.height - 8,
                     escape(spec.x_label));
  out += fmt::format("<text transform=\"translate(16 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     kTop + ph / 2, escape(spec.y_label));
  if (empty) out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
                                kLeft + pw / 2, kTop + ph / 2);
  // Series, then the legend (top right, one line each).
  int legend = 0;
  for (const Series& s : series) {
    std::string d;
    int n = 0;
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      d += fmt::format("{}{:.1f},{:.1f}", n ? " L" : "M", px(x), py(y));
      ++n;
    }
    if (n == 0) continue;
    out += fmt::format("<path class=\"series {}\" data-points=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{}\" "
                       "stroke-width=\"1.6\"{}><title>{}</title></path>\n",
                       escape(s.css_class), n, d, s.color, s.dashed ? " stroke-dasharray=\"5 3\"" : "", escape(s.label));
    if (s.markers || n == 1)
      for (const auto& [x, y] : s.points)
        if (std::isfinite(x) && std::isfinite(y))
          out += fmt::format("<circle class=\"marker {}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n",
                             escape(s.css_class), px(x), py(y), s.color);
    const double ly = kTop + 14 + 16 * legend++;
    out += fmt::format("<line x1=\"{0:.1f}\" x2=\"{1:.1f}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\" stroke-width=\"2\"{4}/>"
                       "<text x=\"{5:.1f}\" y=\"{6:.1f}\" text-anchor=\"end\">{7}</text>\n",
                       kLeft + pw - 34, kLeft + pw - 10, ly, s.color, s.dashed ? " stroke-dasharray=\"5 3\"" : "",
                       kLeft + pw - 40, ly + 4, escape(s.label));
  }
  return out + "</svg>\n";
}

std::string category_color(const std::string& category) {
  if (category == "forward") return "#4c78a8";
  if (category == "backward") return "#54a24b";
  if (category == "optimizer") return "#f58518";
  if (category == "send" || category == "recv") return "#b279a2";
  if (category == "comm") return "#9d755d";
  if (category == "idle") return "#dddddd";
  return "#bab0ac";
}

std::string timeline(const std::vector<std::string>& row_labels, const std::vector<Span>& spans, double begin_us,
                     double end_us) {
  constexpr int kLabel = 150, kRow = 30, kWidth = 900;
  const double pw = kWidth - kLabel - kRight, length = std::max(end_us - begin_us, 1e-9);
  const int height = kTop + kRow * static_cast<int>(row_labels.size()) + kBottom;
  auto px = [&](double t) { return kLabel + (std::clamp(t, begin_us, end_us) - begin_us) / length * pw; };
  std::string out = fmt::format(
      "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n",
      kWidth, height);
  for (std::size_t r = 0; r < row_labels.size(); ++r) {
    const double y = kTop + kRow * static_cast<double>(r);
    out += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{}\" fill=\"#f6f6f6\"/>"
                       "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                       kLabel, y + 3, pw, kRow - 6, kLabel - 8, y + kRow / 2.0 + 4, escape(row_labels[r]));
  }
  for (const Span& s : spans) {
    if (s.end <= begin_us || s.begin >= end_us || s.row < 0 || s.row >= static_cast<int>(row_labels.size())) continue;
    const double x0 = px(s.begin), x1 = px(s.end), y = kTop + kRow * static_cast<double>(s.row);
    const bool thin = s.category == "send" || s.category == "recv";  // transfers: a thinner bar below
    out += fmt::format("<rect class=\"span {}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\">"
                       "<title>{} ({:.3f} ms)</title></rect>\n",
                       escape(s.category), x0, y + (thin ? kRow - 12 : 3), std::max(0.5, x1 - x0), thin ? 6 : kRow - 12,
                       category_color(s.category), escape(s.name), (s.end - s.begin) / 1e3);
  }
  const double axis_y = kTop + kRow * static_cast<double>(row_labels.size()) + 4;
  const double step = nice_step(length / 1e3, 8);
  for (double t = 0; t <= length / 1e3 + step * 1e-9; t += step)
    out += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2:.1f}\" stroke=\"#ccc\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
                       px(begin_us + t * 1e3), kTop, axis_y, axis_y + 14, tick_text(t));
  out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">milliseconds into the step</text>\n",
                     kLabel + pw / 2, height - 6);
  return out + "</svg>\n";
}

}  // namespace troupe::svg
