// Runs a fuzz target (LLVMFuzzerTestOneInput) over files, and the files in folders, without
// libFuzzer: every build replays the seeds through its own compiler and sanitizers, and an input
// the fuzzer found can be replayed the same way (replay_weights FILE).
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Runs one file; returns 1 when it was read, 0 otherwise.
static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
  size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
  fclose(f);
  LLVMFuzzerTestOneInput(buf, got);
  free(buf);
  return 1;
}

int main(int argc, char **argv) {
  int runs = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) continue;
    if (!S_ISDIR(st.st_mode)) {
      runs += run_file(argv[i]);
      continue;
    }
    DIR *d = opendir(argv[i]);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d))) {
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) runs += run_file(path);
    }
    if (d) closedir(d);
  }
  printf("%d inputs replayed\n", runs);
  return runs ? 0 : 1;
}
