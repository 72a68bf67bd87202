// Devices (see device.h): parsing the names, the checks that a precision fits the device, and
// the backend.
#include "train/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "cuda/cuda.h"

ef_status ef_device_parse(ef_device *d, const ef_device_spec *s) {
  const char *device = s->device, *precision = s->precision;
  *d = (ef_device){.activations = EF_F32};
  snprintf(d->precision, sizeof d->precision, "%s", precision);
  if (!strcmp(precision, "bf16")) d->activations = EF_BF16;
  else if (!strcmp(precision, "f16")) d->activations = EF_F16;
  else if (strcmp(precision, "f32") && strcmp(precision, "tf32"))
    return EF_ERROR(EF_ERR_INVALID, "--precision must be f32, tf32, bf16 or f16, not '%s'", precision);
  if (!strcmp(device, "cpu")) {
    if (strcmp(precision, "f32"))
      return EF_ERROR(EF_ERR_INVALID, "--precision %s needs --device cuda: the CPU backend computes in f32", precision);
    return EF_OK;
  }
  if (!strncmp(device, "cuda", 4) && (device[4] == 0 || device[4] == ':')) {
    char *end = NULL;
    long index = device[4] ? strtol(device + 5, &end, 10) : 0;
    if (device[4] && (end == device + 5 || *end || index < 0 || index > 1024))
      return EF_ERROR(EF_ERR_INVALID, "--device '%s': write cuda or cuda:N with N a GPU index", device);
    d->cuda = true, d->index = (int)index;
    return EF_OK;
  }
  return EF_ERROR(EF_ERR_INVALID, "--device must be cpu, cuda or cuda:N, not '%s'", device);
}

const char *ef_device_algo_cache(const char *flag, const char *run_file) {
  const char *env = getenv("EFFNET_ALGO_CACHE");
  return flag ? flag : env && *env ? env : run_file;
}

ef_status ef_device_open(ef_device *d, const ef_device_spec *s, const char *run_file) {
  EF_TRY(ef_device_parse(d, s));
  d->be = d->cuda ? ef_cuda_backend_new(&(ef_cuda_opts){.device = d->index,
                                                        .allow_tf32 = !strcmp(s->precision, "tf32"),
                                                        .algo_cache = ef_device_algo_cache(s->algo_cache, run_file)})
                  : ef_cpu_backend_new((int)s->threads);
  if (!d->be) return EF_ERROR(EF_ERR_UNSUPPORTED, "cannot start device %s: %s", s->device, ef_last_error());
  return EF_OK;
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
