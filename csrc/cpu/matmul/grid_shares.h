// Equal shares of a multiply for the threads that split it.
//
// A multiply of `rows` rows by `columns` columns in panels of `panel_width`
// (the last one narrower when the width does not divide) is a grid of
// rows x panels. Dealing out whole panels leaves threads idle when the
// panels do not divide evenly: four 64-unit slices of H=200 on two threads
// are 128 units against 72. Instead the grid is read panel by panel, row
// by row within a panel, and cut into shares of near-equal multiply-adds at
// whole rows: each thread keeps a contiguous run of panels, and so its part
// of W in its own cache, and at most the panels at its two ends are split
// between it and a neighbour, by rows. With fewer panels than threads that
// is a split of rows.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fusedrnn::cpu {

class PanelGrid {
 public:
  PanelGrid(int64_t rows, int64_t columns, int64_t panel_width)
      : rows_(rows),
        columns_(columns),
        width_(panel_width),
        panels_((columns + panel_width - 1) / panel_width) {}

  // Calls piece(r0, r1, p0, p1) for the parts of share `share` of `shares`:
  // rows [r0, r1) of panels [p0, p1), in order. Together the shares cover
  // the grid once.
  template <class Piece>
  void for_each_piece(int64_t share, int64_t shares, const Piece& piece) const {
    if (rows_ == 0 || columns_ == 0) return;
    const int64_t total = rows_ * columns_;
    const Point begin = point_at(share * total / shares);
    const Point end = point_at((share + 1) * total / shares);
    if (begin.panel == end.panel) {
      if (begin.row < end.row) {
        piece(begin.row, end.row, begin.panel, begin.panel + 1);
      }
      return;
    }
    int64_t whole = begin.panel;
    if (begin.row > 0) {
      piece(begin.row, rows_, begin.panel, begin.panel + 1);
      ++whole;
    }
    if (whole < end.panel) piece(int64_t{0}, rows_, whole, end.panel);
    if (end.row > 0) piece(int64_t{0}, end.row, end.panel, end.panel + 1);
  }

 private:
  struct Point {
    int64_t panel, row;
  };

  // Where `x` row-columns of work from the start fall: a panel and the
  // nearest whole row in it (the start of the next panel after its last).
  Point point_at(int64_t x) const {
    const int64_t panel = std::min(panels_ - 1, x / (rows_ * width_));
    const int64_t width = std::min(width_, columns_ - panel * width_);
    const int64_t row =
        std::min(rows_, (x - panel * rows_ * width_ + width / 2) / width);
    return row == rows_ ? Point{panel + 1, 0} : Point{panel, row};
  }

  int64_t rows_, columns_, width_, panels_;
};

// Shares for a multiply of `work` multiply-adds: one per `task_work` of
// them, at most one per thread.
inline int64_t share_count(int64_t work, int64_t task_work, int64_t threads) {
  return std::clamp<int64_t>(work / task_work, 1, threads);
}

}  // namespace fusedrnn::cpu
