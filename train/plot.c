// Charts as PNG files (see plot.h): a white canvas, axes with "nice" ticks, series, a legend.
#include "train/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "data/encode.h"

// 5x7 glyphs of printable ASCII, a row a byte (bit 4 the leftmost column); missing ones are blank.
static const uint8_t font[95][7] = {
    ['0' - 32] = {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E},
    ['1' - 32] = {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
    ['2' - 32] = {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F},
    ['3' - 32] = {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
    ['4' - 32] = {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02},
    ['5' - 32] = {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
    ['6' - 32] = {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E},
    ['7' - 32] = {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
    ['8' - 32] = {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E},
    ['9' - 32] = {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},
    ['.' - 32] = {0, 0, 0, 0, 0, 0x0C, 0x0C},
    ['-' - 32] = {0, 0, 0, 0x1F, 0, 0, 0},
    ['+' - 32] = {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0},
    ['%' - 32] = {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},
    ['(' - 32] = {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},
    [')' - 32] = {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},
    [':' - 32] = {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0},
    [',' - 32] = {0, 0, 0, 0, 0x0C, 0x04, 0x08},
    ['/' - 32] = {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0},
    ['=' - 32] = {0, 0, 0x1F, 0, 0x1F, 0, 0},
    ['a' - 32] = {0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F},
    ['b' - 32] = {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E},
    ['c' - 32] = {0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E},
    ['d' - 32] = {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F},
    ['e' - 32] = {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E},
    ['f' - 32] = {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08},
    ['g' - 32] = {0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},
    ['h' - 32] = {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11},
    ['i' - 32] = {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E},
    ['j' - 32] = {0x02, 0, 0x06, 0x02, 0x02, 0x12, 0x0C},
    ['k' - 32] = {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},
    ['l' - 32] = {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},
    ['m' - 32] = {0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11},
    ['n' - 32] = {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11},
    ['o' - 32] = {0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E},
    ['p' - 32] = {0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10},
    ['q' - 32] = {0, 0, 0x0D, 0x13, 0x0F, 0x01, 0x01},
    ['r' - 32] = {0, 0, 0x16, 0x19, 0x10, 0x10, 0x10},
    ['s' - 32] = {0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E},
    ['t' - 32] = {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06},
    ['u' - 32] = {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D},
    ['v' - 32] = {0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04},
    ['w' - 32] = {0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A},
    ['x' - 32] = {0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11},
    ['y' - 32] = {0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E},
    ['z' - 32] = {0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F},
    ['A' - 32] = {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11},
    ['B' - 32] = {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},
    ['C' - 32] = {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},
    ['D' - 32] = {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},
    ['E' - 32] = {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},
    ['F' - 32] = {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},
    ['G' - 32] = {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},
    ['H' - 32] = {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},
    ['I' - 32] = {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},
    ['J' - 32] = {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},
    ['K' - 32] = {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},
    ['L' - 32] = {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},
    ['M' - 32] = {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},
    ['N' - 32] = {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},
    ['O' - 32] = {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},
    ['P' - 32] = {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},
    ['Q' - 32] = {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},
    ['R' - 32] = {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},
    ['S' - 32] = {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},
    ['T' - 32] = {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},
    ['U' - 32] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},
    ['V' - 32] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},
    ['W' - 32] = {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},
    ['X' - 32] = {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},
    ['Y' - 32] = {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04},
    ['Z' - 32] = {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},
};

static void put(ef_image *im, int x, int y, uint32_t rgb) {
  if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
  uint8_t *p = im->px + ((size_t)y * im->w + x) * 3;
  p[0] = (uint8_t)(rgb >> 16), p[1] = (uint8_t)(rgb >> 8), p[2] = (uint8_t)rgb;
}

static void rect(ef_image *im, int x0, int y0, int x1, int y1, uint32_t rgb) {
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) put(im, x, y, rgb);
}

void ef_plot_text(ef_image *im, int x, int y, const char *text, int scale, uint32_t rgb) {
  for (int i = 0; text[i]; i++) {
    unsigned ch = (unsigned char)text[i];
    const uint8_t *g = ch >= 32 && ch < 127 ? font[ch - 32] : font[0];
    for (int r = 0; r < 7; r++)
      for (int c = 0; c < 5; c++)
        if (g[r] >> (4 - c) & 1)
          rect(im, x + (6 * i + c) * scale, y + r * scale, x + (6 * i + c + 1) * scale - 1, y + (r + 1) * scale - 1,
               rgb);
  }
}

static int text_width(const char *text, int scale) { return (int)strlen(text) * 6 * scale; }

// A line `thick` pixels wide (Bresenham's steps, each a small square).
static void line(ef_image *im, int x0, int y0, int x1, int y1, int thick, uint32_t rgb) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
  for (;;) {
    rect(im, x0 - thick / 2, y0 - thick / 2, x0 + (thick - 1) / 2, y0 + (thick - 1) / 2, rgb);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * e;
    if (e2 >= dy) e += dy, x0 += sx;
    if (e2 <= dx) e += dx, y0 += sy;
  }
}

// A disc (ring: only the band r - 2 ... r).
static void disc(ef_image *im, int cx, int cy, int r, bool ring, uint32_t rgb) {
  for (int y = -r; y <= r; y++)
    for (int x = -r; x <= r; x++) {
      int d = x * x + y * y;
      if (d <= r * r && (!ring || d >= (r - 2) * (r - 2))) put(im, cx + x, cy + y, rgb);
    }
}

// The axis's ticks: steps of 1, 2 or 5 x 10^k, about six of them over [lo, hi]; log axes
// (values are log10 there) at 1, 2 and 5 x 10^k, or the linear rule when fewer than 3 fall inside.
static int ticks(double lo, double hi, bool log_axis, double *t, int max) {
  int n = 0;
  if (log_axis) {
    for (int k = (int)floor(lo) - 1; k <= (int)ceil(hi) && n < max; k++)
      for (int m = 0; m < 3 && n < max; m++) {
        double v = log10((m == 0 ? 1 : m == 1 ? 2 : 5) * pow(10, k));
        if (v >= lo && v <= hi) t[n++] = v;
      }
    if (n >= 3) return n;
    n = 0;
    double a = pow(10, lo), b = pow(10, hi);
    int k = ticks(a, b, false, t, max);
    for (int i = 0; i < k; i++)
      if (t[i] > 0) t[n++] = log10(t[i]);
    return n;
  }
  double raw = (hi - lo) / 6, mag = pow(10, floor(log10(raw))), step = mag;
  if (raw > 5 * mag) step = 10 * mag;
  else if (raw > 2 * mag) step = 5 * mag;
  else if (raw > mag) step = 2 * mag;
  for (double v = ceil(lo / step) * step; v <= hi + step * 1e-9 && n < max; v += step)
    t[n++] = fabs(v) < step * 1e-9 ? 0 : v;
  return n;
}

void ef_plot_draw(const ef_plot *p, ef_image *im) {
  ef_image_reshape(im, EF_PLOT_W, EF_PLOT_H, 3);
  memset(im->px, 255, (size_t)EF_PLOT_W * EF_PLOT_H * 3);
  const int left = 100, right = EF_PLOT_W - 30, top = 100, bottom = EF_PLOT_H - 70;
  // The ranges over every finite point and its error bar.
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int s = 0; s < p->n_series; s++)
    for (int i = 0; i < p->series[s].n; i++) {
      const ef_plot_series *q = &p->series[s];
      double x = p->log_x ? log10(q->x[i]) : q->x[i], e = q->err && isfinite(q->err[i]) ? q->err[i] : 0;
      if (!isfinite(x) || !isfinite(q->y[i])) continue;
      x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, q->y[i] - e), y1 = fmax(y1, q->y[i] + e);
    }
  if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  double px = 0.06 * (x1 - x0), py = 0.08 * (y1 - y0);
  x0 -= px, x1 += px, y0 -= py, y1 += py;
#define MAP_X(v) (left + (int)lround(((v)-x0) / (x1 - x0) * (right - left)))
#define MAP_Y(v) (bottom - (int)lround(((v)-y0) / (y1 - y0) * (bottom - top)))
  const uint32_t ink = 0x202020, grid = 0xE4E4E4;
  char label[64];
  double t[64];
  int nt = ticks(x0, x1, p->log_x, t, 64);
  for (int i = 0; i < nt; i++) {
    int x = MAP_X(t[i]);
    line(im, x, top, x, bottom, 1, grid);
    line(im, x, bottom, x, bottom + 5, 1, ink);
    snprintf(label, sizeof label, "%g", p->log_x ? pow(10, t[i]) : t[i]);
    ef_plot_text(im, x - text_width(label, 2) / 2, bottom + 12, label, 2, ink);
  }
  nt = ticks(y0, y1, false, t, 64);
  for (int i = 0; i < nt; i++) {
    int y = MAP_Y(t[i]);
    line(im, left, y, right, y, 1, grid);
    line(im, left - 5, y, left, y, 1, ink);
    snprintf(label, sizeof label, "%g", t[i]);
    ef_plot_text(im, left - 10 - text_width(label, 2), y - 7, label, 2, ink);
  }
  line(im, left, top, left, bottom, 2, ink);
  line(im, left, bottom, right, bottom, 2, ink);
  if (p->title) ef_plot_text(im, left, 12, p->title, 2, ink);
  if (p->y_label) ef_plot_text(im, 10, top - 26, p->y_label, 2, ink);
  if (p->x_label) ef_plot_text(im, (left + right - text_width(p->x_label, 2)) / 2, EF_PLOT_H - 28, p->x_label, 2, ink);
  int lx = left; // the legend, in a row under the title
  for (int s = 0; s < p->n_series; s++) {
    const ef_plot_series *q = &p->series[s];
    if (!q->label) continue;
    rect(im, lx, 40, lx + 13, 53, q->rgb);
    ef_plot_text(im, lx + 20, 40, q->label, 2, ink);
    lx += 20 + text_width(q->label, 2) + 24;
  }
  for (int s = 0; s < p->n_series; s++) {
    const ef_plot_series *q = &p->series[s];
    int prev_x = 0, prev_y = 0;
    bool prev = false;
    for (int i = 0; i < q->n; i++) {
      double xv = p->log_x ? log10(q->x[i]) : q->x[i];
      if (!isfinite(xv) || !isfinite(q->y[i])) continue;
      int x = MAP_X(xv), y = MAP_Y(q->y[i]);
      if (q->lines && prev) line(im, prev_x, prev_y, x, y, 2, q->rgb);
      if (q->err && isfinite(q->err[i]) && q->err[i] > 0) {
        int ya = MAP_Y(q->y[i] - q->err[i]), yb = MAP_Y(q->y[i] + q->err[i]);
        line(im, x, ya, x, yb, 2, q->rgb);
        line(im, x - 4, ya, x + 4, ya, 2, q->rgb), line(im, x - 4, yb, x + 4, yb, 2, q->rgb);
      }
      disc(im, x, y, 5, false, q->rgb);
      prev_x = x, prev_y = y, prev = true;
    }
  }
  if (p->mark && isfinite(p->mark_x) && isfinite(p->mark_y)) {
    int x = MAP_X(p->log_x ? log10(p->mark_x) : p->mark_x), y = MAP_Y(p->mark_y);
    disc(im, x, y, 11, true, 0xD01010);
    if (p->mark_label) { // beside the ring, on the side with room
      int w = text_width(p->mark_label, 2);
      ef_plot_text(im, x + 15 + w < EF_PLOT_W ? x + 15 : x - 15 - w, y - 24, p->mark_label, 2, 0xD01010);
    }
  }
#undef MAP_X
#undef MAP_Y
}

ef_status ef_plot_png(const ef_plot *p, const char *path) {
  ef_image im = {0};
  ef_plot_draw(p, &im);
  uint8_t *buf = NULL;
  size_t len = 0;
  ef_status st = ef_image_encode_png(&im, &buf, &len);
  ef_image_free(&im);
  if (st == EF_OK) st = ef_file_write(path, buf, len);
  free(buf);
  return st;
}
