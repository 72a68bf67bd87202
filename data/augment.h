// AutoAugment (policy "v0", the ImageNet policy of the official EfficientNet code) and RandAugment
// (N ops at magnitude M, the official op list), on 8-bit images (RGB or gray) after crop and flip.
// The ops give PIL 9.4's pixels (ImageOps, ImageEnhance, Image.rotate / Image.transform with
// nearest resampling); geometric ops and cutout fill with 128, as the official code does.
#ifndef EF_DATA_AUGMENT_H
#define EF_DATA_AUGMENT_H

#include <stdbool.h>

#include "core/philox.h"
#include "data/image.h"

typedef enum {
  EF_AUG_AUTOCONTRAST,
  EF_AUG_EQUALIZE,
  EF_AUG_INVERT,
  EF_AUG_ROTATE,
  EF_AUG_POSTERIZE,
  EF_AUG_SOLARIZE,
  EF_AUG_SOLARIZE_ADD,
  EF_AUG_COLOR,
  EF_AUG_CONTRAST,
  EF_AUG_BRIGHTNESS,
  EF_AUG_SHARPNESS,
  EF_AUG_SHEAR_X,
  EF_AUG_SHEAR_Y,
  EF_AUG_TRANSLATE_X,
  EF_AUG_TRANSLATE_Y,
  EF_AUG_CUTOUT,
  EF_AUG_NUM_OPS
} ef_aug_op;

// The op's name as the official code spells it ("AutoContrast", "ShearX", ...).
const char *ef_aug_op_name(ef_aug_op op);

// Applies one op with its argument (the value after the official level-to-argument mapping: degrees
// counter-clockwise for Rotate, the shear factor, pixels for Translate (content moves left / up
// for a positive argument), bits kept for Posterize (0-8; more keep the image), the threshold for
// Solarize, the addition for SolarizeAdd (to pixels below 128), the enhancement factor for
// Color/Contrast/Brightness/Sharpness, the half-size for Cutout). im is modified in place; tmp is
// scratch (reshaped as needed). Cutout draws its centre from rng (row, then column: 2 words); no
// other op draws (rng may then be NULL). AutoContrast, Equalize and Invert take no argument.
void ef_aug_apply(ef_image *im, ef_image *tmp, ef_aug_op op, float arg, ef_rng_seq *rng);

// The official level-to-argument mapping, before the random sign that Rotate, ShearX/Y and
// TranslateX/Y draw: level/10 * 30 degrees, * 0.3, * translate_const px; int(level/10 * 4) bits,
// int(level/10 * 256), int(level/10 * 110); level/10 * 1.8 + 0.1 for the enhancements;
// int(level/10 * cutout_const). `randaugment` picks RandAugment's constants (translate 100 px,
// cutout 40 px) over AutoAugment's (250, 100). level >= 0 (RandAugment's magnitude goes to 30).
float ef_aug_level_to_arg(ef_aug_op op, int level, bool randaugment);

// One op of a policy with its argument (the mapping above, sign included).
typedef struct {
  ef_aug_op op;
  float arg;
} ef_aug_step;

// AutoAugment's draws: a sub-policy of v0 uniformly (1 word); for each of its two ops a uniform
// that applies it when below its probability, then for an applied Rotate/Shear/Translate one word
// for the sign (negative below 0.5). The applied ops go, in order, to steps[0..*n). Returns the
// sub-policy's index (0-24, in the official order). At most 5 words.
int ef_autoaugment_draw(ef_rng_seq *rng, ef_aug_step steps[2], int *n);

// One layer of RandAugment: an op uniformly from the official list of 16 (1 word), at magnitude m,
// and for Rotate/Shear/Translate one word for the sign. At most 2 words.
ef_aug_step ef_randaugment_draw(int m, ef_rng_seq *rng);

// ef_autoaugment_draw, then ef_aug_apply of each drawn step (translate 250 px, cutout 100 px as
// in the official code). Draws only from rng, at most 5 words.
void ef_autoaugment(ef_image *im, ef_image *tmp, ef_rng_seq *rng);

// n layers, each ef_randaugment_draw then ef_aug_apply, at magnitude m in [0, 30] (translate
// 100 px, cutout 40 px as in the official code). Draws only from rng, at most 3n words.
void ef_randaugment(ef_image *im, ef_image *tmp, int n, int m, ef_rng_seq *rng);

#endif
