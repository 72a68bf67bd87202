// Fine-tuning (finetune.h): loading pretrained weights without their classifier, and
// marking store entries frozen (by module name) or scaled (the backbone's learning rate).
#include "train/finetune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ef_status ef_pretrained_load(const char *path, const ef_weights_info *w, ef_store *s) {
  return ef_model_load_weights(path, w, w->has_ema, EF_CLASSIFIER ".", s);
}

// Whether `name` lies under `prefix` at a dot: "blocks.1" holds "blocks.1.0.conv_dw.weight", not
// "blocks.10...".
static bool under(const char *name, const char *prefix) {
  size_t n = strlen(prefix);
  return !strncmp(name, prefix, n) && (name[n] == 0 || name[n] == '.' || prefix[n - 1] == '.');
}

// The prefixes one item of a freeze list stands for; returns how many (0 for a malformed range).
static int item_prefixes(const char *item, char out[][32], int cap) {
  int a, b, end = 0, n = 0;
  if (!strcmp(item, "stem")) return snprintf(out[0], 32, "conv_stem"), snprintf(out[1], 32, "bn1"), 2;
  if (!strcmp(item, "head")) return snprintf(out[0], 32, "conv_head"), snprintf(out[1], 32, "bn2"), 2;
  if (sscanf(item, "blocks.%d-%d%n", &a, &b, &end) == 2 && !item[end]) {
    for (int k = a; k <= b && k >= 0 && n < cap; k++) snprintf(out[n++], 32, "blocks.%d", k);
    return n;
  }
  snprintf(out[0], 32, "%s", item);
  return 1;
}

ef_status ef_freeze(ef_store *s, const char *spec, size_t *params) {
  char copy[1024], *save = NULL;
  if (snprintf(copy, sizeof copy, "%s", spec) >= (int)sizeof copy)
    return EF_ERROR(EF_ERR_INVALID, "--freeze is too long");
  bool *mark = ef_xcalloc((size_t)s->n, sizeof *mark);
  ef_status st = EF_OK;
  for (char *item = strtok_r(copy, ",", &save); item && st == EF_OK; item = strtok_r(NULL, ",", &save)) {
    char prefixes[64][32];
    int np = item_prefixes(item, prefixes, 64), matched = 0;
    bool backbone = !strcmp(item, "backbone");
    for (int i = 0; i < s->n; i++) {
      bool hit = backbone && !under(s->entries[i].name, EF_CLASSIFIER);
      for (int k = 0; k < np && !backbone && !hit; k++) hit = under(s->entries[i].name, prefixes[k]);
      if (hit) mark[i] = true, matched++;
    }
    if (!matched)
      st = EF_ERROR(EF_ERR_INVALID,
                    "--freeze: '%s' matches no parameter. Give stem, head, backbone, blocks.A-B (stages), "
                    "or a name prefix such as blocks.2 or blocks.2.1.se (`effnet info MODEL` lists the blocks)",
                    item);
  }
  for (int i = 0; i < s->n && st == EF_OK; i++) {
    ef_store_entry *e = &s->entries[i];
    if (mark[i] && e->trainable && !e->frozen) *params += e->numel;
    if (mark[i]) e->frozen = true;
  }
  free(mark);
  return st;
}

ef_status ef_bn_mode(ef_store *s, const char *mode) {
  bool eval = !strcmp(mode, "eval"), frozen = !strcmp(mode, "frozen");
  if (!eval && !frozen && strcmp(mode, "train"))
    return EF_ERROR(EF_ERR_INVALID, "--bn must be train, eval or frozen, not '%s'", mode);
  for (int i = 0; i < s->n && (eval || frozen); i++) {
    const char *name = s->entries[i].name, *dot = strrchr(name, '.');
    if (!dot || strcmp(dot, ".running_mean")) continue;
    // A batch norm's four entries: <bn>.weight, .bias, .running_mean, .running_var.
    static const char *const stats[] = {"running_mean", "running_var"}, *const affine[] = {"weight", "bias"};
    for (int k = 0; k < 2; k++) {
      char entry[EF_NAME_LEN + 16];
      snprintf(entry, sizeof entry, "%.*s.%s", (int)(dot - name), name, stats[k]);
      int e = ef_store_find(s, entry);
      if (e >= 0) s->entries[e].frozen = true;
      snprintf(entry, sizeof entry, "%.*s.%s", (int)(dot - name), name, affine[k]);
      if (frozen && (e = ef_store_find(s, entry)) >= 0) s->entries[e].frozen = true;
    }
  }
  return EF_OK;
}

void ef_backbone_lr(ef_store *s, float scale) {
  for (int i = 0; i < s->n; i++)
    if (!under(s->entries[i].name, EF_CLASSIFIER)) s->entries[i].lr_scale = scale;
}
