// The metrics log (see metrics.h): JSON lines and a TensorBoard event file. Each TFRecord is
// [uint64 length][masked CRC-32C of the length][Event protobuf][masked CRC-32C of the Event],
// all little-endian; the protobuf is encoded by hand (varints, fixed64/fixed32, nested lengths).
#include "train/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"

// A growing byte buffer, reused for every record.
typedef struct {
  uint8_t *p;
  size_t n, cap;
} ef_bytes;

struct ef_metrics {
  FILE *json, *events;
  char *json_path, *event_path;
  ef_bytes line, record;
};

static uint32_t masked_crc(const void *data, size_t n) {
  uint32_t crc = ef_crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// ---- byte buffer and protobuf encoding ---------------------------------------------------

static uint8_t *bytes_grow(ef_bytes *b, size_t more) {
  if (b->n + more > b->cap) {
    b->cap = (b->n + more) * 2;
    b->p = ef_xrealloc(b->p, b->cap);
  }
  uint8_t *at = b->p + b->n;
  b->n += more;
  return at;
}

static void put(ef_bytes *b, const void *data, size_t n) {
  if (n) memcpy(bytes_grow(b, n), data, n);
}

static void put_le(ef_bytes *b, uint64_t v, int nbytes) {
  uint8_t *at = bytes_grow(b, (size_t)nbytes);
  for (int i = 0; i < nbytes; i++) at[i] = (uint8_t)(v >> (8 * i));
}

static void put_varint(ef_bytes *b, uint64_t v) {
  do {
    uint8_t byte = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) byte |= 0x80;
    put(b, &byte, 1);
  } while (v);
}

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >>= 7) n++;
  return n;
}

// Field keys: field number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
static void put_key(ef_bytes *b, int field, int wire) { put_varint(b, (uint64_t)(field << 3 | wire)); }

static void put_double(ef_bytes *b, int field, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  put_key(b, field, 1);
  put_le(b, bits, 8);
}

static void put_float(ef_bytes *b, int field, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  put_key(b, field, 5);
  put_le(b, bits, 4);
}

static void put_string(ef_bytes *b, int field, const char *s) {
  size_t n = strlen(s);
  put_key(b, field, 2);
  put_varint(b, n);
  put(b, s, n);
}

static void put_printf(ef_bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_printf(ef_bytes *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  EF_ASSERT(n >= 0, "vsnprintf failed on '%s'", fmt);
  uint8_t *at = bytes_grow(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf((char *)at, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->n--; // drop the terminating NUL
}

// A JSON string: quotes, backslashes and control characters escaped, other bytes as they are.
static void put_json_string(ef_bytes *b, const char *s) {
  put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      uint8_t esc[2] = {'\\', *c};
      put(b, esc, 2);
    } else if (*c == '\n') {
      put(b, "\\n", 2);
    } else if (*c == '\t') {
      put(b, "\\t", 2);
    } else if (*c < 0x20) {
      put_printf(b, "\\u%04x", *c);
    } else {
      put(b, c, 1);
    }
  }
  put(b, "\"", 1);
}

// Starts a TFRecord in `b`: room for the 12-byte header, filled in by record_end.
static void record_begin(ef_bytes *b) {
  b->n = 0;
  bytes_grow(b, 12);
}

static void record_end(ef_bytes *b) {
  uint64_t len = b->n - 12;
  for (int i = 0; i < 8; i++) b->p[i] = (uint8_t)(len >> (8 * i));
  uint32_t len_crc = masked_crc(b->p, 8);
  for (int i = 0; i < 4; i++) b->p[8 + i] = (uint8_t)(len_crc >> (8 * i));
  put_le(b, masked_crc(b->p + 12, len), 4);
}

// ---- files -------------------------------------------------------------------------------

static double wall_time(struct timespec *ts) {
  EF_ASSERT(clock_gettime(CLOCK_REALTIME, ts) == 0, "clock_gettime(CLOCK_REALTIME): %s", strerror(errno));
  return (double)ts->tv_sec + 1e-9 * (double)ts->tv_nsec;
}

// mkdir -p: every missing folder on the way is created.
static ef_status make_dirs(const char *dir) {
  size_t n = strlen(dir);
  char *p = ef_xmalloc(n + 1);
  memcpy(p, dir, n + 1);
  ef_status st = EF_OK;
  for (size_t i = 1; i <= n && st == EF_OK; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char keep = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
      st = EF_ERROR(EF_ERR_IO, "cannot create the run folder %s (at %s: %s): give a writable folder", dir, p,
                    strerror(errno));
    p[i] = keep;
  }
  free(p);
  struct stat sb;
  if (st == EF_OK && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
    st = EF_ERROR(EF_ERR_IO, "the run folder %s is not a folder: give a folder for the metrics", dir);
  return st;
}

// A crash while a record was being written leaves metrics.jsonl ending in a partial line: cut
// it off before appending, so that every line stays one whole JSON object.
static ef_status drop_torn_line(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return errno == ENOENT ? EF_OK
                           : EF_ERROR(EF_ERR_IO, "cannot open %s to resume its metrics: %s", path, strerror(errno));
  off_t size = fseeko(f, 0, SEEK_END) == 0 ? ftello(f) : -1, keep = 0, pos = size;
  bool failed = size < 0;
  char buf[4096];
  while (!failed && pos > 0 && keep == 0) {
    size_t chunk = pos < (off_t)sizeof buf ? (size_t)pos : sizeof buf;
    pos -= (off_t)chunk;
    failed = fseeko(f, pos, SEEK_SET) != 0 || fread(buf, 1, chunk, f) != chunk;
    for (size_t j = chunk; j-- > 0 && !failed;)
      if (buf[j] == '\n') {
        keep = pos + (off_t)j + 1;
        break;
      }
  }
  int err = errno;
  if (fclose(f) != 0 || failed)
    return EF_ERROR(EF_ERR_IO, "reading %s to resume its metrics failed: %s", path, strerror(failed ? err : errno));
  if (keep < size && truncate(path, keep) != 0)
    return EF_ERROR(EF_ERR_IO, "cannot cut the partial last line off %s: %s", path, strerror(errno));
  return EF_OK;
}

// events.out.tfevents.<seconds>.<hostname>, with .1, .2, ... if a file of that name exists
// (a resume within the same second).
static ef_status open_event_file(ef_metrics *m, const char *dir, time_t secs) {
  char host[256];
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  for (char *c = host; *c; c++)
    if (*c == '/') *c = '_';
  for (int k = 0; k < 1000; k++) {
    char name[320];
    if (k) snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%d", (long long)secs, host, k);
    else snprintf(name, sizeof name, "events.out.tfevents.%lld.%s", (long long)secs, host);
    m->event_path = ef_path_join(dir, name);
    m->events = fopen(m->event_path, "wbx");
    if (m->events) return EF_OK;
    if (errno != EEXIST)
      return EF_ERROR(EF_ERR_IO, "cannot create %s: %s: give a writable run folder", m->event_path, strerror(errno));
    free(m->event_path);
    m->event_path = NULL;
  }
  return EF_ERROR(EF_ERR_IO, "%s holds 1000 event files of second %lld already: give another run folder", dir,
                  (long long)secs);
}

// Writes b and flushes: a short write or failed flush (disk full) is an error naming `path`.
static ef_status write_flush(FILE *f, const char *path, const ef_bytes *b) {
  if (fwrite(b->p, 1, b->n, f) != b->n || fflush(f) != 0)
    return EF_ERROR(EF_ERR_IO, "writing the metrics to %s failed: %s (is the disk full?)", path, strerror(errno));
  return EF_OK;
}

static void metrics_free(ef_metrics *m) {
  free(m->json_path);
  free(m->event_path);
  free(m->line.p);
  free(m->record.p);
  free(m);
}

ef_status ef_metrics_open(ef_metrics **out, const char *dir, bool append) {
  *out = NULL;
  EF_TRY(make_dirs(dir));
  ef_metrics *m = ef_xcalloc(1, sizeof *m);
  m->json_path = ef_path_join(dir, "metrics.jsonl");
  ef_status st = append ? drop_torn_line(m->json_path) : EF_OK;
  if (st == EF_OK) {
    m->json = fopen(m->json_path, append ? "ab" : "wb");
    if (!m->json)
      st = EF_ERROR(EF_ERR_IO, "cannot open %s: %s: give a writable run folder", m->json_path, strerror(errno));
  }
  struct timespec ts;
  double now = wall_time(&ts);
  if (st == EF_OK) st = open_event_file(m, dir, ts.tv_sec);
  if (st == EF_OK) {
    record_begin(&m->record);
    put_double(&m->record, 1, now);             // Event.wall_time
    put_string(&m->record, 3, "brain.Event:2"); // Event.file_version
    record_end(&m->record);
    st = write_flush(m->events, m->event_path, &m->record);
  }
  if (st != EF_OK) {
    // Already failing: the files are dropped as they are, their close status adds nothing.
    if (m->json) (void)fclose(m->json);
    if (m->events) (void)fclose(m->events);
    metrics_free(m);
    return st;
  }
  *out = m;
  return EF_OK;
}

static bool reserved(const char *tag) {
  return !strcmp(tag, "step") || !strcmp(tag, "epoch") || !strcmp(tag, "wall_time");
}

ef_status ef_metrics_log(ef_metrics *m, int64_t step, int epoch, int n, const char *const *tags, const double *values) {
  EF_ASSERT(n >= 0 && (n == 0 || (tags && values)), "ef_metrics_log: %d values without tags or values", n);
  for (int i = 0; i < n; i++) {
    EF_ASSERT(tags[i] && tags[i][0] && !reserved(tags[i]), "ef_metrics_log: tag %d is empty or a reserved key", i);
    for (int j = 0; j < i; j++) EF_ASSERT(strcmp(tags[i], tags[j]), "ef_metrics_log: tag '%s' given twice", tags[i]);
  }
  struct timespec ts;
  double now = wall_time(&ts);

  ef_bytes *line = &m->line;
  line->n = 0;
  put_printf(line, "{\"step\": %" PRId64 ", \"epoch\": %d, \"wall_time\": %.6f", step, epoch, now);
  for (int i = 0; i < n; i++) {
    put(line, ", ", 2);
    put_json_string(line, tags[i]);
    if (isfinite(values[i])) put_printf(line, ": %.9g", values[i]);
    else put(line, ": null", 6);
  }
  put(line, "}\n", 2);

  // Event { wall_time = 1; step = 2; summary = 5 { repeated value = 1 { tag = 1; simple_value = 2 } } }
  size_t summary_len = 0;
  for (int i = 0; i < n; i++) {
    size_t t = strlen(tags[i]), value_len = 1 + varint_size(t) + t + 1 + 4;
    summary_len += 1 + varint_size(value_len) + value_len;
  }
  ef_bytes *r = &m->record;
  record_begin(r);
  put_double(r, 1, now);
  put_key(r, 2, 0);
  put_varint(r, (uint64_t)step); // int64: negatives as 10-byte two's complement
  put_key(r, 5, 2);
  put_varint(r, summary_len);
  for (int i = 0; i < n; i++) {
    size_t t = strlen(tags[i]);
    put_key(r, 1, 2);
    put_varint(r, 1 + varint_size(t) + t + 1 + 4);
    put_string(r, 1, tags[i]);
    put_float(r, 2, (float)values[i]);
  }
  record_end(r);

  EF_TRY(write_flush(m->json, m->json_path, line));
  return write_flush(m->events, m->event_path, r);
}

const char *ef_metrics_event_path(const ef_metrics *m) { return m->event_path; }

ef_status ef_metrics_close(ef_metrics *m) {
  if (!m) return EF_OK;
  ef_status st = EF_OK;
  if (m->json && fclose(m->json) != 0)
    st = EF_ERROR(EF_ERR_IO, "closing %s failed: %s (is the disk full?)", m->json_path, strerror(errno));
  if (m->events && fclose(m->events) != 0 && st == EF_OK)
    st = EF_ERROR(EF_ERR_IO, "closing %s failed: %s (is the disk full?)", m->event_path, strerror(errno));
  metrics_free(m);
  return st;
}
