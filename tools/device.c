// --device and --precision (see device.h): parsing, the checks that a precision fits the device,
// and the backend.
#include "tools/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "cuda/cuda.h"

int ef_device_parse(ef_device *d, const char *cmd, const char *device, const char *precision) {
  *d = (ef_device){.activations = EF_F32, .precision = precision};
  if (!strcmp(precision, "bf16")) d->activations = EF_BF16;
  else if (!strcmp(precision, "f16")) d->activations = EF_F16;
  else if (strcmp(precision, "f32") && strcmp(precision, "tf32")) {
    fprintf(stderr, "effnet %s: --precision must be f32, tf32, bf16 or f16, not '%s'\n", cmd, precision);
    return 2;
  }
  if (!strcmp(device, "cpu")) {
    if (strcmp(precision, "f32")) {
      fprintf(stderr, "effnet %s: --precision %s needs --device cuda: the CPU backend computes in f32\n", cmd, precision);
      return 2;
    }
    return 0;
  }
  if (!strncmp(device, "cuda", 4) && (device[4] == 0 || device[4] == ':')) {
    char *end = NULL;
    long index = device[4] ? strtol(device + 5, &end, 10) : 0;
    if (device[4] && (end == device + 5 || *end || index < 0 || index > 1024)) {
      fprintf(stderr, "effnet %s: --device '%s': write cuda or cuda:N with N a GPU index\n", cmd, device);
      return 2;
    }
    d->cuda = true, d->index = (int)index;
    return 0;
  }
  fprintf(stderr, "effnet %s: --device must be cpu, cuda or cuda:N, not '%s'\n", cmd, device);
  return 2;
}

int ef_device_open(ef_device *d, const char *cmd, const char *device, const char *precision, int threads) {
  return ef_device_open_algos(d, cmd, device, precision, threads, NULL, NULL);
}

const char *ef_device_algo_cache(const char *flag, const char *run_file) {
  const char *env = getenv("EFFNET_ALGO_CACHE");
  return flag ? flag : env && *env ? env : run_file;
}

int ef_device_open_algos(ef_device *d, const char *cmd, const char *device, const char *precision, int threads,
                         const char *flag, const char *run_file) {
  int rc = ef_device_parse(d, cmd, device, precision);
  if (rc) return rc;
  d->be = d->cuda ? ef_cuda_backend_new(&(ef_cuda_opts){.device = d->index, .allow_tf32 = !strcmp(precision, "tf32"),
                                                        .algo_cache = ef_device_algo_cache(flag, run_file)})
                  : ef_cpu_backend_new(threads);
  if (!d->be) {
    fprintf(stderr, "effnet %s: cannot start device %s: %s\n", cmd, device, ef_last_error());
    return 1;
  }
  return 0;
}

void ef_device_close(ef_device *d) {
  ef_backend_free(d->be);
  d->be = NULL;
}

const char *ef_device_describe(const ef_device *d, char *buf, size_t len) {
  if (d->cuda) snprintf(buf, len, "%s, %s", ef_cuda_describe(d->be), d->precision);
  else snprintf(buf, len, "cpu, %d threads", ef_cpu_threads(d->be));
  return buf;
}
