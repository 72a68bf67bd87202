// The datasets effnet reads, as one list of labelled samples: IDX (MNIST, Fashion-MNIST) and
// CIFAR-10/100 binaries held decoded in memory; ImageFolder trees (root/<class>/<image>) and
// "path,label" CSV lists of JPEG/PNG files read and decoded on demand. Every label is checked
// against the class count when the dataset is opened.
#ifndef EF_DATA_DATASET_H
#define EF_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

// Fashion-MNIST, installed by Debian's dataset-fashion-mnist: effnet's built-in default dataset.
#define EF_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef enum {
  EF_DATASET_IDX = 1,
  EF_DATASET_CIFAR10,
  EF_DATASET_CIFAR100,
  EF_DATASET_FOLDER,
  EF_DATASET_LIST
} ef_dataset_kind;

typedef struct {
  ef_dataset_kind kind;
  char *source; // the directory or file opened, for messages
  int64_t n;
  int num_classes;
  char **class_names; // (num_classes)
  int32_t *labels;    // (n), each in [0, num_classes)
  // In memory (IDX, CIFAR): decoded pixels (n, h, w, c); NULL for file datasets.
  uint8_t *pixels;
  int h, w, c;
  // On disk (ImageFolder, CSV): one path per sample; NULL for in-memory datasets.
  char **paths;
} ef_dataset;

// Opens `path` as whatever it is: a .csv file list; a directory with IDX files
// (<split>-images-idx3-ubyte[.gz], split "train" or "t10k"); CIFAR-10 (data_batch_1..5.bin,
// test_batch.bin); CIFAR-100 (train.bin, test.bin); an ImageNet-style root holding train/ and
// val/ folders; or an ImageFolder itself. `train` picks the split where the path has two.
ef_status ef_dataset_open(const char *path, int train, ef_dataset *out);

ef_status ef_dataset_open_idx(const char *dir, int train, ef_dataset *out);
// CIFAR-100 uses its 100 fine labels.
ef_status ef_dataset_open_cifar(const char *dir, int train, ef_dataset *out);
// Classes are the sub-directories sorted by name (as torchvision); images are the .jpg, .jpeg and
// .png files (any case) in each, sorted by name. An empty class or no classes is an error.
ef_status ef_dataset_open_folder(const char *root, ef_dataset *out);
// Lines "path,label" (paths relative to the list's directory unless absolute; the last comma
// separates, so paths may hold commas; an optional header line "path,label"; label an integer).
// Class names come from "classes.txt" next to the list when it exists, else "0", "1", ...
ef_status ef_dataset_open_list(const char *csv, ef_dataset *out);

void ef_dataset_free(ef_dataset *d);

// Keeps the samples of some classes, relabelled 0, 1, ... in the order listed (names kept):
// `classes` lists labels and ranges ("5-9", "0,2,4-6"; NULL keeps every class), and of each class
// at most the first `per_class` samples in dataset order (0: all of them). Transfer experiments
// and few-shot fine-tuning on any dataset. A class out of range, listed twice or left with no
// sample is an error that changes nothing.
ef_status ef_dataset_select(ef_dataset *d, const char *classes, int64_t per_class);

// A file read whole into *buf (grown as needed, capacity *cap); *len is its size. An unreadable
// file is EF_ERR_IO naming it, a file too large for memory EF_ERR_NOMEM.
ef_status ef_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len);
// Sample i's file, the same way (the message also names the sample and the dataset).
ef_status ef_dataset_read_file(const ef_dataset *d, int64_t i, uint8_t **buf, size_t *cap, size_t *len);

// The class-index file written next to checkpoints: one class name per line, line k for label k.
ef_status ef_classes_write(const char *path, char *const *names, int n);
// Reads such a file; *names is an array of n strings freed with ef_classes_free.
ef_status ef_classes_read(const char *path, char ***names, int *n);
void ef_classes_free(char **names, int n);

#endif
