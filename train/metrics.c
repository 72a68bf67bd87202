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

// Reflected polynomial 0x82F63B78: entry i is the CRC register after shifting byte i through.
static const uint32_t crc32c_table[256] = {
    0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c, 0x26a1e7e8, 0xd4ca64eb, 0x8ad958cf,
    0x78b2dbcc, 0x6be22838, 0x9989ab3b, 0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c,
    0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384, 0x9a879fa0, 0x68ec1ca3, 0x7bbcef57,
    0x89d76c54, 0x5d1d08bf, 0xaf768bbc, 0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a,
    0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512, 0x4b5fa6e6, 0xb93425e5, 0x6dfe410e,
    0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa, 0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad,
    0x1642ae59, 0xe4292d5a, 0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a, 0x7da08661, 0x8fcb0562, 0x9c9bf696,
    0x6ef07595, 0x417b1dbc, 0xb3109ebf, 0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
    0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f, 0xed03a29b, 0x1f682198, 0x5125dad3,
    0xa34e59d0, 0xb01eaa24, 0x42752927, 0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f,
    0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7, 0x61c69362, 0x93ad1061, 0x80fde395,
    0x72966096, 0xa65c047d, 0x5437877e, 0x4767748a, 0xb50cf789, 0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859,
    0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46, 0x7198540d, 0x83f3d70e, 0x90a324fa, 0x62c8a7f9, 0xb602c312,
    0x44694011, 0x5739b3e5, 0xa55230e6, 0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
    0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c, 0x456cac67, 0xb7072f64, 0xa457dc90,
    0x563c5f93, 0x082f63b7, 0xfa44e0b4, 0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
    0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b, 0xb4091bff, 0x466298fc, 0x1871a4d8,
    0xea1a27db, 0xf94ad42f, 0x0b21572c, 0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6, 0x502036a5,
    0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d, 0x2892ed69, 0xdaf96e6a, 0xc9a99d9e,
    0x3bc21e9d, 0xef087a76, 0x1d63f975, 0x0e330a81, 0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d,
    0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905, 0xd9f75af1, 0x2b9cd9f2, 0xff56bd19,
    0x0d3d3e1a, 0x1e6dcdee, 0xec064eed, 0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8,
    0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff, 0x8ecee914, 0x7ca56a17, 0x6ff599e3,
    0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8, 0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
    0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78, 0x7fab5e8c, 0x8dc0dd8f, 0xe330a81a,
    0x115b2b19, 0x020bd8ed, 0xf0605bee, 0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1, 0x69e9f0d5, 0x9b8273d6,
    0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e, 0xf36e6f75, 0x0105ec76, 0x12551f82,
    0xe03e9c81, 0x34f4f86a, 0xc69f7b69, 0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
    0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t ef_crc32c(const void *data, size_t n) {
  const uint8_t *p = data;
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

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
