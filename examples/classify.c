// classify: the five most likely classes of an image, from any effnet weights file, through
// libeffnet's public API (include/effnet/effnet.h). Build against an installed effnet:
//   cc classify.c $(pkg-config --cflags --libs effnet) -o classify      (or find_package(effnet))
//   ./classify b0.h5 cat.jpg
#include <stdio.h>
#include <stdlib.h>

#include "effnet/effnet.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: classify WEIGHTS.h5 IMAGE\n");
    return 2;
  }
  ef_net *net = ef_net_open(argv[1], NULL); // the CPU, one image, the model's own preprocessing
  if (!net) {
    fprintf(stderr, "classify: %s\n", ef_last_error());
    return 1;
  }
  int classes = ef_net_classes(net), best[5];
  float *image = malloc(sizeof(float) * (size_t)ef_net_input_floats(net));
  float *logits = malloc(sizeof(float) * (size_t)classes), prob[5];
  int rc = 0;
  if (!image || !logits) {
    fprintf(stderr, "classify: out of memory\n");
    rc = 1;
  } else if (ef_net_load_image(net, argv[2], image) != EF_OK || ef_net_run(net, image, 1, logits, NULL) != EF_OK) {
    fprintf(stderr, "classify: %s\n", ef_last_error());
    rc = 1;
  } else {
    int k = ef_top_k(logits, classes, 5, best, prob);
    printf("%s:\n", argv[2]);
    for (int r = 0; r < k; r++) {
      const char *name = ef_net_class_name(net, best[r]);
      if (name) printf("  %6.2f%%  %s\n", 100.0 * prob[r], name);
      else printf("  %6.2f%%  class %d\n", 100.0 * prob[r], best[r]);
    }
  }
  free(image), free(logits);
  ef_net_close(net);
  return rc;
}
