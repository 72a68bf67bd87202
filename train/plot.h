// Charts as PNG files: series of points (with error bars, joined or not) against linear or
// logarithmic x, axes with ticks and labels in a 5x7 bitmap font, a legend and one marked point.
// What the scaling commands draw their results with (train/scale.h).
#ifndef EF_TRAIN_PLOT_H
#define EF_TRAIN_PLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "data/image.h"

typedef struct {
  const char *label;         // in the legend
  const double *x, *y, *err; // n points; err: half-heights of error bars (NULL: none)
  int n;
  uint32_t rgb; // 0xRRGGBB
  bool lines;   // join the points in the order given
} ef_plot_series;

typedef struct {
  const char *title, *x_label, *y_label;
  bool log_x;
  const ef_plot_series *series;
  int n_series;
  bool mark; // a ring around (mark_x, mark_y) with mark_label beside it
  double mark_x, mark_y;
  const char *mark_label;
} ef_plot;

enum { EF_PLOT_W = 960, EF_PLOT_H = 640 };

// Draws p into im (EF_PLOT_W x EF_PLOT_H, RGB). Non-finite points are left out.
void ef_plot_draw(const ef_plot *p, ef_image *im);
// Draws p and writes it to path as a PNG, atomically. EF_ERR_IO naming path when it cannot.
ef_status ef_plot_png(const ef_plot *p, const char *path);
// Writes text into im at (x, y) (its top left), each font pixel a scale x scale square.
void ef_plot_text(ef_image *im, int x, int y, const char *text, int scale, uint32_t rgb);

#endif
