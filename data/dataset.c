// Opening the datasets of data/dataset.h: IDX and CIFAR binaries into memory, ImageFolder trees
// and CSV lists as sorted paths; class names; and reading one sample's file.
#include "data/dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/idx.h"

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void ef_classes_free(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

void ef_dataset_free(ef_dataset *d) {
  ef_classes_free(d->class_names, d->num_classes);
  for (int64_t i = 0; d->paths && i < d->n; i++) free(d->paths[i]);
  free(d->paths), free(d->labels), free(d->pixels), free(d->source);
  memset(d, 0, sizeof *d);
}

ef_status ef_dataset_select(ef_dataset *d, const char *classes, int64_t per_class) {
  int k = 0, *map = ef_xmalloc(sizeof(int) * (size_t)d->num_classes),
      *order = ef_xmalloc(sizeof(int) * (size_t)d->num_classes);
  int64_t *count = ef_xcalloc((size_t)d->num_classes, sizeof(int64_t));
  ef_status st = EF_OK;
  for (int c = 0; c < d->num_classes; c++) map[c] = classes ? -1 : c, order[c] = c;
  if (!classes) k = d->num_classes;
  for (const char *p = classes; p && *p && st == EF_OK;) {
    char *end;
    long a = strtol(p, &end, 10), b = a;
    if (end != p && *end == '-') b = strtol(end + 1, &end, 10);
    if (end == p || (*end && *end != ',') || a > b) {
      st = EF_ERROR(EF_ERR_INVALID, "classes '%s': give labels and ranges such as 5-9 or 0,2,4-6", classes);
      break;
    }
    for (long c = a; c <= b && st == EF_OK; c++) {
      if (c < 0 || c >= d->num_classes)
        st = EF_ERROR(EF_ERR_INVALID, "class %ld: %s has classes 0 to %d", c, d->source, d->num_classes - 1);
      else if (map[c] >= 0) st = EF_ERROR(EF_ERR_INVALID, "classes '%s' lists class %ld twice", classes, c);
      else map[c] = k, order[k++] = (int)c;
    }
    p = *end ? end + 1 : end;
  }
  // Which samples stay: a first pass counts, so that an empty class fails before anything changes.
  for (int64_t i = 0; i < d->n && st == EF_OK; i++) {
    int c = map[d->labels[i]];
    if (c >= 0 && (!per_class || count[c] < per_class)) count[c]++;
  }
  for (int c = 0; c < k && st == EF_OK; c++)
    if (!count[c])
      st = EF_ERROR(EF_ERR_INVALID, "class %d (%s) has no sample in %s", order[c], d->class_names[order[c]], d->source);
  if (st == EF_OK) {
    memset(count, 0, sizeof(int64_t) * (size_t)d->num_classes);
    size_t image = (size_t)d->h * d->w * d->c;
    int64_t kept = 0;
    for (int64_t i = 0; i < d->n; i++) {
      int c = map[d->labels[i]];
      bool keep = c >= 0 && (!per_class || count[c] < per_class);
      if (!keep) {
        if (d->paths) free(d->paths[i]);
        continue;
      }
      count[c]++;
      d->labels[kept] = c;
      if (d->pixels) memmove(d->pixels + (size_t)kept * image, d->pixels + (size_t)i * image, image);
      if (d->paths) d->paths[kept] = d->paths[i];
      kept++;
    }
    d->n = kept;
    char **names = ef_xmalloc(sizeof(char *) * (size_t)k);
    for (int c = 0; c < k; c++) names[c] = ef_xstrdup(d->class_names[order[c]]);
    ef_classes_free(d->class_names, d->num_classes);
    d->class_names = names, d->num_classes = k;
  }
  free(map), free(order), free(count);
  return st;
}

// Names "0", "1", ... for datasets that carry none.
static char **numbered_names(int n) {
  char **names = ef_xmalloc(sizeof(char *) * (size_t)n);
  for (int i = 0; i < n; i++) {
    char buf[16];
    snprintf(buf, sizeof buf, "%d", i);
    names[i] = ef_xstrdup(buf);
  }
  return names;
}

static char **copy_names(const char *const *src, int n) {
  char **names = ef_xmalloc(sizeof(char *) * (size_t)n);
  for (int i = 0; i < n; i++) names[i] = ef_xstrdup(src[i]);
  return names;
}

// The class names in `dir`/`file` when that file exists (it must name exactly n classes), else
// fallback (NULL: numbered).
static ef_status names_from(const char *dir, const char *file, int n, const char *const *fallback, char ***names) {
  char *path = ef_path_join(dir, file);
  int got = 0;
  ef_status st = EF_OK;
  *names = NULL;
  if (is_file(path) && (st = ef_classes_read(path, names, &got)) == EF_OK && got != n) {
    ef_classes_free(*names, got), *names = NULL;
    st = EF_ERROR(EF_ERR_FORMAT, "%s names %d classes but the data has %d: fix or remove it", path, got, n);
  }
  free(path);
  if (st == EF_OK && !*names) *names = fallback ? copy_names(fallback, n) : numbered_names(n);
  return st;
}

// ---- class-index files -----------------------------------------------------------------------

ef_status ef_classes_write(const char *path, char *const *names, int n) {
  FILE *f = fopen(path, "w");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot write the class list %s: %s", path, strerror(errno));
  for (int i = 0; i < n; i++) fprintf(f, "%s\n", names[i]);
  int failed = ferror(f);
  if (fclose(f) != 0 || failed)
    return EF_ERROR(EF_ERR_IO, "writing the class list %s failed: %s", path, strerror(errno));
  return EF_OK;
}

ef_status ef_classes_read(const char *path, char ***names, int *n) {
  *names = NULL, *n = 0;
  FILE *f = fopen(path, "r");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot open the class list %s: %s", path, strerror(errno));
  char line[4096];
  int cap = 0, blank = 0; // blank: empty lines since the last name (allowed only at the end)
  ef_status st = EF_OK;
  while (st == EF_OK && fgets(line, sizeof line, f)) {
    size_t len = strcspn(line, "\r\n");
    if (line[len] == 0 && !feof(f)) {
      st = EF_ERROR(EF_ERR_FORMAT, "%s: line %d is longer than %zu bytes", path, *n + blank + 1, sizeof line - 2);
      break;
    }
    line[len] = 0;
    if (len == 0) {
      blank++;
      continue;
    }
    if (blank) st = EF_ERROR(EF_ERR_FORMAT, "%s: line %d is empty: every class needs a name", path, *n + 1);
    if (*n == cap) *names = ef_xrealloc(*names, sizeof(char *) * (size_t)(cap = cap ? 2 * cap : 64));
    (*names)[(*n)++] = ef_xstrdup(line);
  }
  if (st == EF_OK && ferror(f)) st = EF_ERROR(EF_ERR_IO, "reading the class list %s failed", path);
  fclose(f);
  if (st == EF_OK && *n == 0)
    st = EF_ERROR(EF_ERR_FORMAT, "the class list %s is empty: expected one name per line", path);
  if (st != EF_OK) ef_classes_free(*names, *n), *names = NULL, *n = 0;
  return st;
}

// ---- IDX -----------------------------------------------------------------------------------

static const char *const fashion_names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

ef_status ef_dataset_open_idx(const char *dir, int train, ef_dataset *out) {
  memset(out, 0, sizeof *out);
  ef_idx_dataset idx;
  EF_TRY(ef_idx_load_dir(dir, train ? "train" : "t10k", &idx));
  // Fashion-MNIST is told from MNIST by its directory name; both have 10 classes.
  int fashion = strstr(dir, "fashion") || strstr(dir, "Fashion");
  *out = (ef_dataset){.kind = EF_DATASET_IDX,
                      .source = ef_xstrdup(dir),
                      .n = idx.n,
                      .num_classes = idx.num_classes,
                      .labels = idx.labels,
                      .pixels = idx.pixels,
                      .h = (int)idx.rows,
                      .w = (int)idx.cols,
                      .c = 1};
  ef_status st = names_from(dir, "classes.txt", idx.num_classes,
                            fashion && idx.num_classes == 10 ? fashion_names : NULL, &out->class_names);
  if (st != EF_OK) ef_dataset_free(out);
  return st;
}

// ---- CIFAR ---------------------------------------------------------------------------------

static const char *const cifar10_names[] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                            "dog",      "frog",       "horse", "ship", "truck"};

// Appends the records of one CIFAR file: `label_bytes` (1: the label; 2: coarse then fine) and
// 3072 bytes of planar 32x32 R, G, B; pixels become (32, 32, 3).
static ef_status read_cifar_file(const char *path, int label_bytes, int classes, ef_dataset *d, int64_t *cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  const int rec = label_bytes + 3072;
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    fclose(f);
    return EF_ERROR(EF_ERR_IO, "cannot stat %s: %s", path, strerror(e));
  }
  if (st.st_size == 0 || st.st_size % rec != 0) {
    fclose(f);
    return EF_ERROR(EF_ERR_FORMAT, "%s: %lld bytes is not a whole number of %d-byte CIFAR-%d records", path,
                    (long long)st.st_size, rec, classes);
  }
  int64_t count = st.st_size / rec;
  if (d->n + count > *cap) {
    *cap = (d->n + count) * 2;
    d->pixels = ef_xrealloc(d->pixels, (size_t)*cap * 3072);
    d->labels = ef_xrealloc(d->labels, sizeof(int32_t) * (size_t)*cap);
  }
  uint8_t buf[2 + 3072];
  for (int64_t r = 0; r < count; r++) {
    if (fread(buf, 1, (size_t)rec, f) != (size_t)rec) {
      fclose(f);
      return EF_ERROR(EF_ERR_IO, "%s: read failed at record %lld", path, (long long)r);
    }
    int label = buf[label_bytes - 1];
    if (label >= classes) {
      fclose(f);
      return EF_ERROR(EF_ERR_FORMAT, "%s: record %lld has label %d, expected 0 ... %d (is this CIFAR-%d?)", path,
                      (long long)r, label, classes - 1, classes);
    }
    uint8_t *px = d->pixels + (size_t)d->n * 3072;
    for (int i = 0; i < 1024; i++)
      for (int c = 0; c < 3; c++) px[i * 3 + c] = buf[label_bytes + c * 1024 + i];
    d->labels[d->n++] = label;
  }
  fclose(f);
  return EF_OK;
}

ef_status ef_dataset_open_cifar(const char *dir, int train, ef_dataset *out) {
  memset(out, 0, sizeof *out);
  char *probe1 = ef_path_join(dir, "data_batch_1.bin"), *probe2 = ef_path_join(dir, "test_batch.bin");
  int ten = is_file(probe1) || is_file(probe2);
  free(probe1), free(probe2);
  *out = (ef_dataset){.kind = ten ? EF_DATASET_CIFAR10 : EF_DATASET_CIFAR100,
                      .source = ef_xstrdup(dir),
                      .num_classes = ten ? 10 : 100,
                      .h = 32,
                      .w = 32,
                      .c = 3};
  const char *files10[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                           "data_batch_5.bin"};
  const char *test10[] = {"test_batch.bin"}, *train100[] = {"train.bin"}, *test100[] = {"test.bin"};
  const char **files = ten ? (train ? files10 : test10) : (train ? train100 : test100);
  int nfiles = ten && train ? 5 : 1;
  int64_t cap = 0;
  for (int i = 0; i < nfiles; i++) {
    char *path = ef_path_join(dir, files[i]);
    ef_status st = read_cifar_file(path, ten ? 1 : 2, out->num_classes, out, &cap);
    free(path);
    if (st != EF_OK) {
      ef_dataset_free(out);
      return st;
    }
  }
  ef_status st = ten ? names_from(dir, "batches.meta.txt", 10, cifar10_names, &out->class_names)
                     : names_from(dir, "fine_label_names.txt", 100, NULL, &out->class_names);
  if (st != EF_OK) ef_dataset_free(out);
  return st;
}

// ---- ImageFolder -----------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  char ext[8] = {0};
  for (int i = 0; i < 7 && dot[1 + i]; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
  return !strcmp(ext, "jpg") || !strcmp(ext, "jpeg") || !strcmp(ext, "png");
}

typedef struct {
  char **items;
  int64_t n, cap;
} str_list;

static void push(str_list *l, char *s) {
  if (l->n == l->cap) l->items = ef_xrealloc(l->items, sizeof(char *) * (size_t)(l->cap = l->cap ? 2 * l->cap : 256));
  l->items[l->n++] = s;
}

// What scanning an ImageFolder left out, for its warning: how many, and the first few by path.
typedef struct {
  int64_t n;
  char names[1024];
} skipped_list;

static void skip(skipped_list *s, const char *path) {
  size_t used = strlen(s->names);
  if (s->n++ < 5 && used < sizeof s->names)
    snprintf(s->names + used, sizeof s->names - used, "%s%s", used ? ", " : "", path);
}

// The entries of `dir` (not "." or "..", nor hidden), sorted: its folders (`want_dirs`) or its
// regular files (links to them included). Below a class folder (`links` not NULL) links to
// folders are not followed but added to *links; with `special`, entries that are neither files nor
// folders (FIFOs, sockets, devices, dangling links) are added to *special.
static ef_status list_dir(const char *dir, int want_dirs, skipped_list *links, skipped_list *special, str_list *out) {
  *out = (str_list){0};
  DIR *d = opendir(dir);
  if (!d) return EF_ERROR(EF_ERR_IO, "cannot open the directory %s: %s", dir, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *path = ef_path_join(dir, e->d_name);
    struct stat st, lst;
    bool found = stat(path, &st) == 0, folder = found && S_ISDIR(st.st_mode), file = found && S_ISREG(st.st_mode);
    bool link = lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode);
    if (want_dirs && folder && links && link) skip(links, path);
    else if (want_dirs ? folder : file) push(out, ef_xstrdup(e->d_name));
    else if (!want_dirs && special && !folder && !file) skip(special, path);
    free(path);
  }
  closedir(d);
  if (out->n) qsort(out->items, (size_t)out->n, sizeof(char *), cmp_str);
  return EF_OK;
}

static void free_list(str_list *l) {
  for (int64_t i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
  *l = (str_list){0};
}

// Samples being collected: paths and their labels.
typedef struct {
  str_list paths;
  int32_t *labels;
} sample_list;

static void add_sample(sample_list *s, char *path, int32_t label) {
  int64_t cap = s->paths.cap;
  push(&s->paths, path);
  if (s->paths.cap != cap || !s->labels) s->labels = ef_xrealloc(s->labels, sizeof(int32_t) * (size_t)s->paths.cap);
  s->labels[s->paths.n - 1] = label;
}

// What scanning an ImageFolder's classes left out: files that are not images, links to folders,
// and entries that are neither files nor folders.
typedef struct {
  skipped_list other, links, special;
} folder_skips;

// dir and every directory below it, links to folders not followed (full paths, in no particular
// order).
static ef_status collect_dirs(const char *dir, str_list *out, folder_skips *sk) {
  push(out, ef_xstrdup(dir));
  str_list subs;
  EF_TRY(list_dir(dir, 1, &sk->links, NULL, &subs));
  ef_status st = EF_OK;
  for (int64_t i = 0; st == EF_OK && i < subs.n; i++) {
    char *sub = ef_path_join(dir, subs.items[i]);
    st = collect_dirs(sub, out, sk);
    free(sub);
  }
  free_list(&subs);
  return st;
}

// Appends the image files under a class directory with `label`, in torchvision's order
// (sorted(os.walk(dir)): directories by path, then each one's files by name); what it leaves out
// goes into *sk.
static ef_status add_class(const char *dir, int label, sample_list *s, folder_skips *sk) {
  str_list dirs = {0};
  ef_status st = collect_dirs(dir, &dirs, sk);
  if (dirs.n) qsort(dirs.items, (size_t)dirs.n, sizeof(char *), cmp_str);
  for (int64_t d = 0; st == EF_OK && d < dirs.n; d++) {
    str_list files;
    if ((st = list_dir(dirs.items[d], 0, NULL, &sk->special, &files)) != EF_OK) break;
    for (int64_t i = 0; i < files.n; i++) {
      char *path = ef_path_join(dirs.items[d], files.items[i]);
      if (has_image_ext(files.items[i])) add_sample(s, path, label);
      else skip(&sk->other, path), free(path);
    }
    free_list(&files);
  }
  free_list(&dirs);
  return st;
}

ef_status ef_dataset_open_folder(const char *root, ef_dataset *out) {
  memset(out, 0, sizeof *out);
  if (!is_dir(root))
    return EF_ERROR(EF_ERR_IO, "%s is not a directory: expected an ImageFolder root/<class>/<image>", root);
  str_list classes;
  sample_list samples = {0};
  EF_TRY(list_dir(root, 1, NULL, NULL, &classes)); // class folders may be links
  ef_status st = EF_OK;
  if (classes.n == 0)
    st = EF_ERROR(EF_ERR_FORMAT, "%s has no class directories: expected root/<class>/<image>.jpg", root);
  folder_skips *sk = ef_xcalloc(1, sizeof *sk);
  for (int64_t c = 0; st == EF_OK && c < classes.n; c++) {
    char *dir = ef_path_join(root, classes.items[c]);
    int64_t before = samples.paths.n;
    st = add_class(dir, (int)c, &samples, sk);
    if (st == EF_OK && samples.paths.n == before)
      st = EF_ERROR(EF_ERR_FORMAT, "class directory %s holds no .jpg, .jpeg or .png file", dir);
    free(dir);
  }
  *out = (ef_dataset){.kind = EF_DATASET_FOLDER,
                      .source = ef_xstrdup(root),
                      .n = samples.paths.n,
                      .paths = samples.paths.items,
                      .labels = samples.labels,
                      .num_classes = (int)classes.n,
                      .class_names = classes.items};
  if (st == EF_OK && sk->other.n)
    fprintf(stderr, "effnet: warning: %s: ignored %lld files that are not .jpg, .jpeg or .png (%s%s)\n", root,
            (long long)sk->other.n, sk->other.names, sk->other.n > 5 ? ", ..." : "");
  if (st == EF_OK && sk->links.n)
    fprintf(stderr,
            "effnet: warning: %s: skipped %lld links to folders inside class folders (effnet follows none: a "
            "link can lead out of its class or around in a loop): %s%s\n",
            root, (long long)sk->links.n, sk->links.names, sk->links.n > 5 ? ", ..." : "");
  if (st == EF_OK && sk->special.n)
    fprintf(stderr,
            "effnet: warning: %s: skipped %lld entries that are neither files nor folders (FIFOs, sockets, devices, "
            "dangling links): %s%s\n",
            root, (long long)sk->special.n, sk->special.names, sk->special.n > 5 ? ", ..." : "");
  free(sk);
  if (st != EF_OK) ef_dataset_free(out);
  return st;
}

// ---- CSV lists ---------------------------------------------------------------------------------

ef_status ef_dataset_open_list(const char *csv, ef_dataset *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(csv, "r");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot open the file list %s: %s", csv, strerror(errno));
  char *dir = ef_xstrdup(csv), *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else strcpy(dir, ".");
  *out = (ef_dataset){.kind = EF_DATASET_LIST, .source = ef_xstrdup(csv)};
  sample_list samples = {0};
  int64_t lineno = 0;
  ef_status st = EF_OK;
  char line[8192];
  int max_label = -1;
  while (st == EF_OK && fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strcspn(line, "\r\n");
    if (len == sizeof line - 1) {
      st = EF_ERROR(EF_ERR_FORMAT, "%s:%lld: line longer than %zu bytes", csv, (long long)lineno, sizeof line - 2);
      break;
    }
    line[len] = 0;
    if (!len) continue;
    char *comma = strrchr(line, ',');
    if (!comma || comma == line) {
      st = EF_ERROR(EF_ERR_FORMAT, "%s:%lld: '%s' is not 'path,label'", csv, (long long)lineno, line);
      break;
    }
    *comma = 0;
    const char *label_text = comma + 1;
    char *end;
    errno = 0;
    long label = strtol(label_text, &end, 10);
    if (lineno == 1 && !strcmp(line, "path") && !strcmp(label_text, "label")) continue;
    if (errno || end == label_text || *end || label < 0 || label > 1000000) {
      st = EF_ERROR(EF_ERR_FORMAT, "%s:%lld: label '%s' is not a class index (an integer from 0)", csv,
                    (long long)lineno, label_text);
      break;
    }
    add_sample(&samples, line[0] == '/' ? ef_xstrdup(line) : ef_path_join(dir, line), (int32_t)label);
    if (label > max_label) max_label = (int)label;
  }
  fclose(f);
  out->paths = samples.paths.items, out->n = samples.paths.n, out->labels = samples.labels;
  if (st == EF_OK && out->n == 0) st = EF_ERROR(EF_ERR_FORMAT, "the file list %s has no samples", csv);
  if (st == EF_OK) {
    char *names_path = ef_path_join(dir, "classes.txt");
    if (is_file(names_path)) {
      st = ef_classes_read(names_path, &out->class_names, &out->num_classes);
      if (st == EF_OK && max_label >= out->num_classes)
        st = EF_ERROR(EF_ERR_FORMAT, "%s has label %d but %s names only %d classes", csv, max_label, names_path,
                      out->num_classes);
    } else {
      out->num_classes = max_label + 1;
      out->class_names = numbered_names(out->num_classes);
    }
    free(names_path);
  }
  free(dir);
  if (st != EF_OK) ef_dataset_free(out);
  return st;
}

// ---- any of them -----------------------------------------------------------------------------

ef_status ef_dataset_open(const char *path, int train, ef_dataset *out) {
  memset(out, 0, sizeof *out);
  size_t len = strlen(path);
  if (len > 4 && !strcmp(path + len - 4, ".csv")) return ef_dataset_open_list(path, out);
  if (!is_dir(path))
    return EF_ERROR(
        EF_ERR_IO, "%s is neither a directory nor a .csv file list: give an IDX, CIFAR or ImageFolder directory", path);
  static const char *const markers[][2] = {
      {"train-images-idx3-ubyte.gz", "idx"},
      {"train-images-idx3-ubyte", "idx"},
      {"t10k-images-idx3-ubyte.gz", "idx"},
      {"data_batch_1.bin", "cifar"},
      {"train.bin", "cifar"},
      {"test_batch.bin", "cifar"},
  };
  for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++) {
    char *p = ef_path_join(path, markers[i][0]);
    int found = is_file(p);
    free(p);
    if (found)
      return !strcmp(markers[i][1], "idx") ? ef_dataset_open_idx(path, train, out)
                                           : ef_dataset_open_cifar(path, train, out);
  }
  // An ImageNet-style root: train/ and val/ (or test/) folders.
  char *tr = ef_path_join(path, "train"), *va = ef_path_join(path, "val"), *te = ef_path_join(path, "test");
  const char *split = NULL;
  if (is_dir(tr) && (is_dir(va) || is_dir(te))) split = train ? tr : is_dir(va) ? va : te;
  ef_status st = ef_dataset_open_folder(split ? split : path, out);
  free(tr), free(va), free(te);
  return st;
}

ef_status ef_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len) {
  // Without blocking: opening a FIFO for reading would wait for a writer forever.
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return EF_ERROR(EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  int err = fstat(fd, &st) != 0 ? errno : 0;
  if (err || !S_ISREG(st.st_mode)) {
    close(fd);
    return err ? EF_ERROR(EF_ERR_IO, "cannot stat %s: %s", path, strerror(err))
               : EF_ERROR(EF_ERR_IO, "%s is not a regular file (a folder, a FIFO, a device?)", path);
  }
  size_t size = (size_t)st.st_size;
  if (size > *cap) {
    free(*buf);
    *cap = 0;
    if (!(*buf = malloc(size))) {
      close(fd);
      return EF_ERROR(EF_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, size);
    }
    *cap = size;
  }
  size_t got = 0;
  int e = 0;
  while (got < size && !e) {
    ssize_t n = read(fd, *buf + got, size - got);
    if (n > 0) got += (size_t)n;
    else if (n == 0) break; // the file shrank
    else if (errno != EINTR) e = errno;
  }
  close(fd);
  if (got != size)
    return EF_ERROR(EF_ERR_IO, "reading %s: %zu of %zu bytes%s%s", path, got, size, e ? ": " : "",
                    e ? strerror(e) : "");
  *len = size;
  return EF_OK;
}

ef_status ef_dataset_read_file(const ef_dataset *d, int64_t i, uint8_t **buf, size_t *cap, size_t *len) {
  ef_status st = ef_read_file(d->paths[i], buf, cap, len);
  if (st == EF_OK) return st;
  char message[1200];
  snprintf(message, sizeof message, "%s (sample %lld of %s)", ef_last_error(), (long long)i, d->source);
  return ef_error_pass(st, message);
}
