// The metrics log: CRC-32C known answers; files written by ef_metrics read back here, the event
// file through its TFRecord framing (both masked CRCs) and a protobuf decoder, metrics.jsonl
// through a small JSON parser (NaN and infinities as null); resuming, and the I/O errors.
// `test_metrics write DIR` writes the records that metrics_tensorboard.py checks.
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "tests/harness.h"
#include "train/metrics.h"

static char dir[] = "/tmp/effnet-metrics-XXXXXX";

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, got;
  char *p = malloc(cap + 1);
  while ((got = fread(p + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) p = realloc(p, (cap *= 2) + 1);
  }
  fclose(f);
  p[n] = '\0';
  *len = n;
  return p;
}

// ---- the event file: TFRecord frames and the Event protobuf ---------------------------

enum { MAX_VALUES = 1100, MAX_TAG = 300 };

typedef struct {
  double wall_time;
  int64_t step;
  char file_version[64];
  int n; // summary values
  char tag[MAX_VALUES][MAX_TAG];
  float value[MAX_VALUES];
} event;

static uint32_t unmask(const uint8_t *p) {
  uint32_t m = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  uint32_t rot = m - 0xa282ead8u;
  return (rot << 15) | (rot >> 17);
}

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

// CRC-32C one bit at a time, the definition the table must reproduce.
static uint32_t crc32c_bitwise(const uint8_t *p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

// A varint at *p (before end); false when it runs past the end or past 10 bytes.
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// One protobuf field: its number and wire type, and its payload (varint value, or bytes).
typedef struct {
  int field, wire;
  uint64_t v;
  const uint8_t *data;
  size_t len;
} pb_field;

static bool next_field(const uint8_t **p, const uint8_t *end, pb_field *f) {
  uint64_t key;
  if (!varint(p, end, &key)) return false;
  f->field = (int)(key >> 3), f->wire = (int)(key & 7);
  size_t fixed = f->wire == 1 ? 8 : f->wire == 5 ? 4 : 0;
  if (f->wire == 0) return varint(p, end, &f->v);
  if (f->wire == 2) {
    if (!varint(p, end, &f->v) || f->v > (uint64_t)(end - *p)) return false;
    fixed = (size_t)f->v;
  } else if (!fixed || (size_t)(end - *p) < fixed) {
    return false;
  }
  f->data = *p, f->len = fixed;
  *p += fixed;
  return true;
}

static bool decode_value(const uint8_t *p, const uint8_t *end, event *e) {
  pb_field f;
  char *tag = e->tag[e->n];
  tag[0] = '\0';
  bool has_value = false;
  while (p < end) {
    if (!next_field(&p, end, &f)) return false;
    if (f.field == 1 && f.wire == 2 && f.len < MAX_TAG) {
      memcpy(tag, f.data, f.len);
      tag[f.len] = '\0';
    } else if (f.field == 2 && f.wire == 5) {
      uint32_t bits = (uint32_t)le(f.data, 4);
      memcpy(&e->value[e->n], &bits, 4);
      has_value = true;
    } else {
      return false;
    }
  }
  e->n++;
  return has_value;
}

static bool decode_event(const uint8_t *p, const uint8_t *end, event *e) {
  memset(e, 0, sizeof *e);
  pb_field f;
  while (p < end) {
    if (!next_field(&p, end, &f)) return false;
    if (f.field == 1 && f.wire == 1) {
      uint64_t bits = le(f.data, 8);
      memcpy(&e->wall_time, &bits, 8);
    } else if (f.field == 2 && f.wire == 0) {
      e->step = (int64_t)f.v;
    } else if (f.field == 3 && f.wire == 2 && f.len < sizeof e->file_version) {
      memcpy(e->file_version, f.data, f.len);
    } else if (f.field == 5 && f.wire == 2) {
      const uint8_t *q = f.data, *qend = f.data + f.len;
      pb_field v;
      while (q < qend) {
        if (!next_field(&q, qend, &v) || v.field != 1 || v.wire != 2 || e->n == MAX_VALUES) return false;
        if (!decode_value(v.data, v.data + v.len, e)) return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

// Reads every record of an event file into ev (at most max); -1 when the framing, a CRC or a
// protobuf is wrong (with a CHECK failure saying which).
static int read_events(const char *path, event *ev, int max) {
  size_t len;
  uint8_t *buf = (uint8_t *)read_all(path, &len);
  CHECK(buf, "cannot read %s", path);
  if (!buf) return -1;
  int n = 0;
  size_t at = 0;
  while (at < len) {
    if (len - at < 12 || n == max) break;
    uint64_t rlen = le(buf + at, 8);
    bool len_ok = unmask(buf + at + 8) == crc32c_bitwise(buf + at, 8);
    CHECK(len_ok, "%s record %d: length CRC", path, n);
    if (!len_ok || rlen > len - at - 16) break;
    const uint8_t *data = buf + at + 12;
    bool data_ok = unmask(data + rlen) == crc32c_bitwise(data, (size_t)rlen);
    CHECK(data_ok, "%s record %d: data CRC", path, n);
    bool pb_ok = data_ok && decode_event(data, data + rlen, &ev[n]);
    CHECK(pb_ok, "%s record %d: Event protobuf does not decode", path, n);
    if (!pb_ok) break;
    at += 12 + (size_t)rlen + 4;
    n++;
  }
  CHECK(at == len, "%s: %zu bytes left over after %d records", path, len - at, n);
  free(buf);
  return at == len ? n : -1;
}

// ---- metrics.jsonl: flat objects of numbers and nulls -----------------------------------

enum { MAX_KEYS = 1200 };

typedef struct {
  int n;
  char key[MAX_KEYS][MAX_TAG];
  double value[MAX_KEYS];
  bool null[MAX_KEYS];
} json_line;

static const char *ws(const char *s) {
  while (*s == ' ') s++;
  return s;
}

static const char *json_string(const char *s, char *out) {
  if (*s++ != '"') return NULL;
  int n = 0;
  while (*s != '"') {
    if ((unsigned char)*s < 0x20 || n == MAX_TAG - 1) return NULL;
    char c = *s++;
    if (c == '\\') {
      c = *s++;
      if (c == 'n') c = '\n';
      else if (c == 't') c = '\t';
      else if (c == 'r') c = '\r';
      else if (c == 'b') c = '\b';
      else if (c == 'f') c = '\f';
      else if (c == 'u') {
        unsigned u;
        if (sscanf(s, "%4x", &u) != 1 || u >= 0x80) return NULL;
        c = (char)u, s += 4;
      } else if (c != '"' && c != '\\' && c != '/') {
        return NULL;
      }
    }
    out[n++] = c;
  }
  out[n] = '\0';
  return s + 1;
}

// One line "{...}\n"; NULL on a syntax error, else the text after the newline.
static const char *json_parse_line(const char *s, json_line *j) {
  j->n = 0;
  if (*s++ != '{') return NULL;
  for (;;) {
    if (j->n == MAX_KEYS || !(s = json_string(ws(s), j->key[j->n]))) return NULL;
    s = ws(s);
    if (*s++ != ':') return NULL;
    s = ws(s);
    j->null[j->n] = !strncmp(s, "null", 4);
    if (j->null[j->n]) {
      s += 4;
    } else {
      if (*s != '-' && (*s < '0' || *s > '9')) return NULL; // strtod would take "nan", "inf"
      char *after;
      j->value[j->n] = strtod(s, &after);
      s = after;
    }
    j->n++;
    s = ws(s);
    if (*s == '}') break;
    if (*s++ != ',') return NULL;
  }
  return s[1] == '\n' ? s + 2 : NULL;
}

// The lines of a metrics.jsonl; -1 on a syntax error.
static int read_json(const char *path, json_line *lines, int max) {
  size_t len;
  char *buf = read_all(path, &len);
  CHECK(buf, "cannot read %s", path);
  if (!buf) return -1;
  int n = 0;
  const char *s = buf;
  while (*s && n < max && (s = json_parse_line(s, &lines[n]))) n++;
  bool ok = s && !*s;
  CHECK(ok, "%s: line %d does not parse", path, n + 1);
  free(buf);
  return ok ? n : -1;
}

// ---- the checks --------------------------------------------------------------------------

static event ev[8];
static json_line js[8];

static void test_crc32c(void) {
  uint8_t zeros[32] = {0}, ones[32], up[32], down[32];
  for (int i = 0; i < 32; i++) ones[i] = 0xff, up[i] = (uint8_t)i, down[i] = (uint8_t)(31 - i);
  CHECK(ef_crc32c("123456789", 9) == 0xE3069283u, "crc32c(123456789) = %08x", ef_crc32c("123456789", 9));
  // RFC 3720 (iSCSI) B.4
  CHECK(ef_crc32c(zeros, 32) == 0x8A9136AAu, "crc32c(32 zeros) = %08x", ef_crc32c(zeros, 32));
  CHECK(ef_crc32c(ones, 32) == 0x62A8AB43u, "crc32c(32 x ff) = %08x", ef_crc32c(ones, 32));
  CHECK(ef_crc32c(up, 32) == 0x46DD794Eu, "crc32c(0..31) = %08x", ef_crc32c(up, 32));
  CHECK(ef_crc32c(down, 32) == 0x113FDB5Cu, "crc32c(31..0) = %08x", ef_crc32c(down, 32));
  CHECK(ef_crc32c("", 0) == 0, "crc32c of nothing = %08x", ef_crc32c("", 0));
  // Every byte value alone: each of the 256 table entries is used once.
  int bad = -1;
  uint32_t got = 0, want = 0;
  for (int b = 0; b < 256 && bad < 0; b++) {
    uint8_t byte = (uint8_t)b;
    got = ef_crc32c(&byte, 1), want = crc32c_bitwise(&byte, 1);
    if (got != want) bad = b;
  }
  CHECK(bad < 0, "crc32c of the byte %02x = %08x, bitwise %08x", bad, got, want);
  // Every length up to 64 at every start within 8 bytes: the 8-byte steps, their tails and their
  // alignment, against the bitwise definition.
  uint8_t buf[80];
  for (int i = 0; i < 80; i++) buf[i] = (uint8_t)(ef_philox_u32(5, 0, 0, (uint64_t)i) >> 24);
  int bad_len = -1, bad_at = -1;
  for (int at = 0; at < 8 && bad_len < 0; at++)
    for (int len = 0; len <= 64 && bad_len < 0; len++)
      if (ef_crc32c(buf + at, (size_t)len) != crc32c_bitwise(buf + at, (size_t)len)) bad_len = len, bad_at = at;
  CHECK(bad_len < 0, "crc32c of %d bytes at offset %d differs from the bitwise one", bad_len, bad_at);
  CHECK(ef_crc32c_extend(ef_crc32c_extend(0, buf, 13), buf + 13, 50) == ef_crc32c(buf, 63), "pieces do not chain");
}

// The record `r` of the log must hold these tags and values, at this step, epoch and time.
static void expect_record(int r, int64_t step, int epoch, int n, const char *const *tags, const double *values,
                          double t0, double t1) {
  const event *e = &ev[r + 1];
  const json_line *j = &js[r];
  CHECK(e->step == step && e->n == n && !e->file_version[0], "record %d: event step %lld, %d values", r,
        (long long)e->step, e->n);
  CHECK(e->wall_time >= t0 && e->wall_time <= t1, "record %d: wall time %.6f not in [%.0f, %.0f]", r, e->wall_time, t0,
        t1);
  CHECK(j->n == n + 3 && !strcmp(j->key[0], "step") && j->value[0] == (double)step && !strcmp(j->key[1], "epoch") &&
            j->value[1] == epoch && !strcmp(j->key[2], "wall_time") && fabs(j->value[2] - e->wall_time) < 1e-5,
        "record %d: JSON has %d keys, step %.17g, epoch %g, wall_time %.6f", r, j->n, j->value[0], j->value[1],
        j->value[2]);
  for (int i = 0; i < n && i < e->n && i + 3 < j->n; i++) {
    float want = (float)values[i]; // bit for bit: NaN, -0 and denormals included
    CHECK(!strcmp(e->tag[i], tags[i]) && !memcmp(&e->value[i], &want, 4),
          "record %d value %d: event '%s' = %.9g, want '%s' = %.9g", r, i, e->tag[i], e->value[i], tags[i], want);
    bool json_ok = isfinite(values[i]) ? !j->null[i + 3] && (float)j->value[i + 3] == want : j->null[i + 3];
    CHECK(!strcmp(j->key[i + 3], tags[i]) && json_ok, "record %d value %d: JSON '%s' = %.9g%s, want '%s' = %.9g", r, i,
          j->key[i + 3], j->value[i + 3], j->null[i + 3] ? " (null)" : "", tags[i], values[i]);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char path[256], json_path[512];

static void test_records(void) {
  static char long_tag[201], big_tags[1000][16];
  static const char *big_tag_ptrs[1000];
  static double big_values[1000];
  memset(long_tag, 'x', 200);
  for (int i = 0; i < 1000; i++) {
    snprintf(big_tags[i], 16, "big/%d", i);
    big_tag_ptrs[i] = big_tags[i];
    big_values[i] = i * 0.001 - 0.3;
  }
  const char *tags1[] = {"train/loss", "train/lr"};
  const double values1[] = {2.5, 0.016};
  const char *tags2[] = {"odd \"q\" \\ \n\t\x01 \xc3\xa9", long_tag, "nan", "inf", "-inf", "tiny", "-zero"};
  const double values2[] = {1.0 / 3, 123456.789, NAN, INFINITY, -INFINITY, 1e-42, -0.0};

  snprintf(path, sizeof path, "%s/run/a/b", dir); // two missing folders
  snprintf(json_path, sizeof json_path, "%s/metrics.jsonl", path);
  double t0 = floor(now());
  ef_metrics *m;
  ef_status st = ef_metrics_open(&m, path, false);
  CHECK(st == EF_OK, "open: %s", ef_last_error());
  if (st != EF_OK) return;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  long long secs = 0;
  char name_host[256] = "";
  const char *base = strrchr(ef_metrics_event_path(m), '/') + 1;
  CHECK(sscanf(base, "events.out.tfevents.%lld.%255s", &secs, name_host) == 2 && secs >= t0 && secs <= now() &&
            !strcmp(name_host, host),
        "event file %s (host %s)", base, host);

  // Each record must be in both files before close: they are flushed.
  CHECK(ef_metrics_log(m, 0, 0, 2, tags1, values1) == EF_OK, "log 1: %s", ef_last_error());
  CHECK(read_events(ef_metrics_event_path(m), ev, 8) == 2 && read_json(json_path, js, 8) == 1, "after record 1");
  CHECK(ef_metrics_log(m, (int64_t)1 << 40, 3, 7, tags2, values2) == EF_OK, "log 2: %s", ef_last_error());
  CHECK(ef_metrics_log(m, 5, -1, 0, NULL, NULL) == EF_OK, "log 3: %s", ef_last_error());
  int n_ev = read_events(ef_metrics_event_path(m), ev, 8), n_js = read_json(json_path, js, 8);
  CHECK(n_ev == 4 && n_js == 3, "%d events, %d JSON lines before close", n_ev, n_js);
  st = ef_metrics_close(m);
  CHECK(st == EF_OK, "close: %s", ef_last_error());
  double t1 = ceil(now());
  if (n_ev != 4 || n_js != 3) return;
  CHECK(!strcmp(ev[0].file_version, "brain.Event:2") && ev[0].n == 0 && ev[0].step == 0 && ev[0].wall_time >= t0 &&
            ev[0].wall_time <= t1,
        "first record: file_version '%s', wall time %.6f", ev[0].file_version, ev[0].wall_time);
  expect_record(0, 0, 0, 2, tags1, values1, t0, t1);
  expect_record(1, (int64_t)1 << 40, 3, 7, tags2, values2, t0, t1);
  expect_record(2, 5, -1, 0, NULL, NULL, t0, t1);
  CHECK(ev[1].wall_time <= ev[2].wall_time && ev[2].wall_time <= ev[3].wall_time, "wall times go forward");

  // A record whose summary needs a 3-byte length (1000 values, ~19 KB).
  static event big;
  st = ef_metrics_open(&m, path, true);
  CHECK(st == EF_OK, "reopen: %s", ef_last_error());
  if (st != EF_OK) return;
  CHECK(ef_metrics_log(m, 7, 1, 1000, big_tag_ptrs, big_values) == EF_OK, "log big: %s", ef_last_error());
  event *two = calloc(2, sizeof *two);
  int n = read_events(ef_metrics_event_path(m), two, 2);
  big = two[1];
  free(two);
  CHECK(ef_metrics_close(m) == EF_OK, "close: %s", ef_last_error());
  CHECK(n == 2 && big.n == 1000 && big.step == 7, "big record: %d records, %d values", n, big.n);
  for (int i = 0; i < big.n; i++)
    if (strcmp(big.tag[i], big_tags[i]) || big.value[i] != (float)big_values[i]) {
      CHECK(false, "big record value %d: '%s' = %g", i, big.tag[i], big.value[i]);
      break;
    }
}

static int count_event_files(const char *d) {
  DIR *dd = opendir(d);
  if (!dd) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(dd));) n += !strncmp(e->d_name, "events.out.tfevents.", 20);
  closedir(dd);
  return n;
}

// Resuming adds to metrics.jsonl (after cutting off a torn last line) and starts another
// event file; a fresh open starts metrics.jsonl over.
static void test_resume(void) {
  // test_records left 4 lines (3 + the big one) and 2 event files in `path`.
  FILE *f = fopen(json_path, "ab");
  CHECK(f, "cannot open %s", json_path);
  if (!f) return;
  fputs("{\"step\": 9, \"ep", f); // a crash in the middle of a record
  fclose(f);
  ef_metrics *m;
  ef_status st = ef_metrics_open(&m, path, true);
  CHECK(st == EF_OK, "resume: %s", ef_last_error());
  if (st != EF_OK) return;
  const char *tag[] = {"val/top1"};
  CHECK(ef_metrics_log(m, 8, 2, 1, tag, (double[]){0.75}) == EF_OK, "log: %s", ef_last_error());
  CHECK(ef_metrics_close(m) == EF_OK, "close: %s", ef_last_error());
  CHECK(count_event_files(path) == 3, "%d event files after resuming twice", count_event_files(path));
  int n = read_json(json_path, js, 8);
  CHECK(n == 5 && js[3].value[0] == 7 && js[4].value[0] == 8 && !strcmp(js[4].key[3], "val/top1") &&
            js[4].value[3] == 0.75,
        "resumed metrics.jsonl: %d lines", n);

  // The whole file one torn line: nothing of it stays.
  f = fopen(json_path, "wb");
  CHECK(f, "cannot open %s", json_path);
  if (!f) return;
  fputs("{\"st", f);
  fclose(f);
  CHECK(ef_metrics_open(&m, path, true) == EF_OK, "resume: %s", ef_last_error());
  CHECK(ef_metrics_log(m, 9, 2, 1, tag, (double[]){0.5}) == EF_OK && ef_metrics_close(m) == EF_OK, "log: %s",
        ef_last_error());
  n = read_json(json_path, js, 8);
  CHECK(n == 1 && js[0].value[0] == 9, "after a torn only line: %d lines", n);

  CHECK(ef_metrics_open(&m, path, false) == EF_OK && ef_metrics_close(m) == EF_OK, "fresh open: %s", ef_last_error());
  size_t len;
  free(read_all(json_path, &len));
  CHECK(len == 0 && count_event_files(path) == 5, "a fresh open left %zu bytes in metrics.jsonl, %d event files", len,
        count_event_files(path));
}

// The open must fail with EF_ERR_IO, a message naming `needle`.
static void expect_open_error(const char *what, const char *d, const char *needle) {
  ef_metrics *m = (ef_metrics *)&m;
  ef_status st = ef_metrics_open(&m, d, false);
  CHECK(st == EF_ERR_IO && m == NULL && strstr(ef_last_error(), needle), "%s: status %d, message '%s'", what, st,
        ef_last_error());
}

static void test_errors(void) {
  char file[128], d[256];
  snprintf(file, sizeof file, "%s/plain-file", dir);
  FILE *f = fopen(file, "wb");
  CHECK(f && fclose(f) == 0, "cannot create %s", file);
  snprintf(d, sizeof d, "%s/sub/run", file);
  expect_open_error("folder under a file", d, d);
  expect_open_error("a file as the folder", file, "plain-file is not a folder");
  char dir_json[128], json[256];
  snprintf(dir_json, sizeof dir_json, "%s/dir-json", dir);
  snprintf(json, sizeof json, "%s/metrics.jsonl", dir_json);
  CHECK(mkdir(dir_json, 0777) == 0 && mkdir(json, 0777) == 0, "mkdir %s", json);
  expect_open_error("metrics.jsonl a folder", dir_json, json);
  if (geteuid() != 0) { // root writes anywhere
    snprintf(d, sizeof d, "%s/read-only", dir);
    CHECK(mkdir(d, 0555) == 0, "mkdir %s", d);
    expect_open_error("read-only folder", d, d);
  }

  struct stat sb;
  if (stat("/dev/full", &sb) != 0) {
    printf("  (no /dev/full: the full-disk check is skipped)\n");
    return;
  }
  char full[128];
  snprintf(full, sizeof full, "%s/full", dir);
  snprintf(json, sizeof json, "%s/metrics.jsonl", full);
  CHECK(mkdir(full, 0777) == 0 && symlink("/dev/full", json) == 0, "symlink %s", json);
  ef_metrics *m;
  ef_status st = ef_metrics_open(&m, full, false);
  CHECK(st == EF_OK, "open: %s", ef_last_error());
  if (st != EF_OK) return;
  const char *tag[] = {"x"};
  st = ef_metrics_log(m, 1, 0, 1, tag, (double[]){1});
  CHECK(st == EF_ERR_IO && strstr(ef_last_error(), json) && strstr(ef_last_error(), "disk full"),
        "full disk: status %d, '%s'", st, ef_last_error());
  ef_metrics_close(m); // fails again, or not: the buffer was dropped
}

// The records metrics_tensorboard.py expects (it holds its own copy of these values).
static int write_known(const char *d) {
  char long_tag[151] = "long/";
  memset(long_tag + 5, 'x', 145); // a length over 127: a 2-byte varint
  const char *tags[] = {"train/loss", "train/lr", "val/top1", "odd \"tag\" \\ \xc3\xa9", long_tag};
  const double v0[] = {2.5, 0.1}, v1[] = {1.25, 1.0 / 3, 0.375}, v2[] = {NAN, INFINITY, -0.0, 0.5, 1e-42};
  ef_metrics *m;
  ef_status st = ef_metrics_open(&m, d, false);
  if (st == EF_OK) st = ef_metrics_log(m, 0, 0, 2, tags, v0);
  if (st == EF_OK) st = ef_metrics_log(m, 100, 1, 3, tags, v1);
  if (st == EF_OK) st = ef_metrics_log(m, (int64_t)1 << 33, 2, 5, tags, v2);
  ef_status close_st = ef_metrics_close(m);
  if (st == EF_OK) st = close_st;
  if (st != EF_OK) fprintf(stderr, "test_metrics write: %s\n", ef_last_error());
  return st == EF_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "write")) return write_known(argv[2]);
  test_mkdtemp(dir);
  RUN(test_crc32c);
  RUN(test_records);
  RUN(test_resume);
  RUN(test_errors);
  test_rmtree(dir);
  return test_exit_code();
}
