// Owns the report page's drawings: line plots and a span timeline as inline SVG text (no scripts, no
// network), each element tagged with a class so that a test can find and count what was drawn.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace troupe::svg {

// Text made safe inside HTML/SVG elements and attribute values.
std::string escape(const std::string& text);

struct Series {
  std::string label;        // legend text
  std::string css_class;    // e.g. "train-loss": the path is <path class="series train-loss" data-points="N" ...>
  std::string color;        // CSS color
  std::vector<std::pair<double, double>> points;  // (x, y), in x order
  bool dashed = false;
  bool markers = false;     // a circle at every point (few points, such as evaluations)
};

struct PlotSpec {
  std::string title, x_label, y_label;
  int width = 760, height = 320;
};

// One <svg> with axes, ticks, grid, legend and a <path> per series with points (a series with one
// point gets a marker). Non-finite points are left out.
std::string line_plot(const PlotSpec& spec, const std::vector<Series>& series);

struct Span {
  int row = 0;
  double begin = 0.0, end = 0.0;  // same unit as the window
  std::string category;           // "forward", "backward", "optimizer", "send", "recv", "comm", ...
  std::string name;               // shown as a tooltip (<title>)
};

// A timeline: one row per label, the spans as rectangles coloured by category, clipped to
// [begin, end], time axis in milliseconds from `begin` (the unit of spans is microseconds).
std::string timeline(const std::vector<std::string>& row_labels, const std::vector<Span>& spans, double begin_us,
                     double end_us);

// The colour the timeline gives a category (for a legend beside it).
std::string category_color(const std::string& category);

}  // namespace troupe::svg
