// `effnet train`: the flag table that fills a trainer's configuration (train/trainer.h), and the
// loop over the trainer's calls with the progress lines. SIGINT and SIGTERM save a checkpoint and
// stop; --resume goes on from one bit for bit; --gpus N starts one worker per GPU.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/plan.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "tools/train_flags.h"
#include "train/launch.h"
#include "train/run_dir.h"
#include "train/trainer.h"

// ---- the run's lines ----------------------------------------------------------------------------

// What is trained, on what, and how: the configuration table, then what the trainer made of it.
static void print_setup(const ef_trainer *t, const ef_flags *f) {
  const ef_train_config *c = &t->cfg;
  const ef_model_desc *m = &t->info.model;
  char tdesc[256], edesc[256], where[512];
  ef_transform_describe(&t->train_tf, tdesc, sizeof tdesc);
  ef_transform_describe(&m->eval, edesc, sizeof edesc);
  printf("effnet train: model %s (%zu parameters), data %s (%lld train / %lld test images, %d classes)\n",
         strcmp(m->arch, "tiny") ? m->cfg.name : "tiny", ef_store_count(t->store, true), c->data, (long long)t->train.n,
         (long long)t->test.n, t->train.num_classes);
  ef_flags_echo(f, stdout);
  printf("  input: %s; test: %s; %ld loader threads\n", tdesc, edesc, c->loader_threads);
  if (ef_trainer_mixes(t) || c->reprob > 0)
    printf("  mixing: Mixup %g, CutMix %g (a batch mixed with probability %g; CutMix's share %g); random erasing %g "
           "(%s)\n",
           c->mixup, c->cutmix, c->mix_prob, c->mix_switch_prob, c->reprob, c->remode);
  if (c->accum > 1) printf("  accumulation: %ld micro-batches of %ld per update\n", c->accum, c->batch);
  if (t->train.pixels && !c->image_size && !c->init && t->train_tf.size > t->train.h)
    printf("  note: the %dx%d images are upscaled to %dx%d, the least %s takes (--image-size chooses another size)\n",
           t->train.w, t->train.h, t->train_tf.size, t->train_tf.size, m->cfg.name);
  if (t->train.kind == EF_DATASET_FOLDER && !strcmp(t->train.source, t->test.source))
    printf("  note: %s has no separate test split (train/ and val/ folders), so validation uses the training images\n",
           c->data);
  if (t->train.kind == EF_DATASET_LIST)
    printf("  note: a file list has no separate test split, so validation uses the training images\n");
  printf("  %lld steps/epoch, learning rate %.4g (%g per 256 images x global batch %lld / 256); on %s\n",
         (long long)ef_trainer_batches(t), t->sched.lr, c->lr, (long long)t->global_batch,
         ef_device_describe(&t->dev, where, sizeof where));
  if (c->init) {
    const float *mean = m->eval.mean, *std = m->eval.std;
    printf(
        "  init: %s from %s%s: everything but the classifier loaded; the classifier (%d classes there) re-initialized "
        "for %d classes\n  normalization mean %.4g,%.4g,%.4g std %.4g,%.4g,%.4g (%s)\n",
        t->pre.desc.cfg.name, c->init, t->pre.has_ema ? " (its EMA weights)" : "", t->pre.desc.num_classes,
        m->num_classes, mean[0], mean[1], mean[2], std[0], std[1], std[2],
        t->pre.recorded_norm ? "the pretrained model's" : "ImageNet's: the weights file records none");
    if (t->resuming) printf("  (resuming: the weights come from the checkpoint)\n");
  }
  if (c->freeze || strcmp(c->bn, "train") || c->backbone_lr != 1)
    printf("  frozen: %s (%zu of %zu parameters); other batch norms: %s; backbone lr x%g\n",
           c->freeze ? c->freeze : "nothing", t->frozen, ef_store_count(t->store, true), c->bn, c->backbone_lr);
  printf("  run folder %s; activation memory %.1f MiB planned for training\n", t->out,
         (double)t->tr.plan->arena_bytes / 1048576.0);
  if (t->resuming)
    printf("  resumed from %s at epoch %lld, batch %lld, step %lld%s\n", c->resume, (long long)t->info.epoch + 1,
           (long long)t->info.batch, (long long)t->info.step,
           t->info.validation_pending ? " (the validation of the epoch before first)" : "");
  if (t->comm->world > 1 || !strcmp(t->comm->name, "nccl"))
    printf("  data parallel: %d ranks (%s), global batch %lld (--batch %ld per rank); gradients in %d bucket(s)%s; "
           "batch norm %s\n",
           t->comm->world, t->comm->name, (long long)t->global_batch, c->batch, t->step.sync.n,
           c->bucket_mb > 0 ? " during the backward pass" : " after the backward pass",
           t->bn_comm ? "synchronized over groups of --sync-bn ranks" : "per rank");
  fflush(stdout);
}

// ---- the loop's lines ---------------------------------------------------------------------------

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }
static int stop_requested(void *user) { return stop_signal; }

static const char *signal_name(int sig) { return sig == SIGINT ? "SIGINT" : "SIGTERM"; }

// What the lines need between steps (rank 0 prints).
typedef struct {
  bool lead, tty;
  long log_every;
  double t_start, t_log;
  int64_t since; // images over all ranks since the last progress line
} lines;

// Progress: a line rewritten in place on a terminal, plain lines every --log-every steps
// otherwise (and at an epoch's end), each logged to the metrics.
static ef_status after_step(void *user, ef_trainer *t, const ef_step_result *r, double lr) {
  lines *l = user;
  const ef_checkpoint_info *info = &t->info;
  int64_t batches = ef_trainer_batches(t);
  double now = ef_seconds();
  l->since += t->global_batch;
  bool last = info->batch == batches;
  if (!l->lead || !(last || (l->tty ? now - l->t_log > 0.25 : info->batch % l->log_every == 0))) return EF_OK;
  double rate = (double)l->since / (now - l->t_log);
  double eta = (double)(batches * t->cfg.epochs - info->step) * (double)t->global_batch / rate;
  double acc = (double)info->epoch_correct / (double)info->epoch_seen, loss = info->epoch_loss / (double)info->batch;
  long long epoch = (long long)info->epoch + 1, batch = (long long)info->batch;
  // Mixed targets have no one right class: no training accuracy then (as timm reports none).
  char acc_text[32] = "";
  if (!ef_trainer_mixes(t)) snprintf(acc_text, sizeof acc_text, "%sacc %.2f%%  ", l->tty ? "" : "train ", 100 * acc);
  if (l->tty)
    printf("\repoch %lld/%ld  step %lld/%lld  loss %.4f  %slr %.3g  %.0f images/s  ETA %02d:%02d:%02d %s", epoch,
           t->cfg.epochs, batch, (long long)batches, loss, acc_text, lr, rate, (int)(eta / 3600),
           (int)fmod(eta / 60, 60), (int)fmod(eta, 60), last ? "\n" : "");
  else
    printf("epoch %lld/%ld  step %lld/%lld  loss %.4f  %slr %.4g  %.0f images/s\n", epoch, t->cfg.epochs, batch,
           (long long)batches, loss, acc_text, lr, rate);
  fflush(stdout);
  l->t_log = now, l->since = 0;
  return ef_trainer_log_progress(t, r->loss, acc, lr, rate);
}

// Progressive learning: the stage the run is in (at the start, and at each change).
static void print_stage(const ef_trainer *t) {
  ef_stage_info s = ef_trainer_stage(t);
  if (s.stages < 2) return;
  char ra[48] = "";
  if (t->train_tf.augment == EF_AUGMENT_RAND) snprintf(ra, sizeof ra, ", RandAugment magnitude %d", s.ra_magnitude);
  printf("stage %d/%d: image size %d%s, Mixup %.3g, dropout %.3g\n", s.stage + 1, s.stages, s.image_size, ra, s.mixup,
         s.dropout);
}

static void stage_entered(void *user, ef_trainer *t) {
  if (((lines *)user)->lead) print_stage(t);
}

static void after_epoch(void *user, ef_trainer *t, const ef_epoch_result *e) {
  lines *l = user;
  l->t_log = ef_seconds(), l->since = 0; // the rate counts training only
  if (!l->lead) return;
  printf("epoch %lld/%ld  validation: loss %.4f  top-1 %.2f%%  top-5 %.2f%%", (long long)t->info.epoch, t->cfg.epochs,
         e->live.loss, 100 * e->live.top1, 100 * e->live.top5);
  if (t->step.has_ema)
    printf("  |  EMA: loss %.4f  top-1 %.2f%%  top-5 %.2f%%", e->ema.loss, 100 * e->ema.top1, 100 * e->ema.top5);
  printf("  (%lld images)\n", (long long)e->live.images);
  fflush(stdout);
}

// The run from the trainer's position: 0, 128 + a signal when stopped by one, or 1 after a message.
static int train(ef_trainer *t, long stop_after, long log_every) {
  lines l = {.lead = t->comm->rank == 0, .tty = isatty(STDOUT_FILENO), .log_every = log_every, .t_start = ef_seconds()};
  l.t_log = l.t_start;
  if (l.lead) print_stage(t);
  ef_fit_hooks h = {.user = &l,
                    .after_step = after_step,
                    .after_epoch = after_epoch,
                    .stop_requested = stop_requested,
                    .stage_entered = stage_entered,
                    .stop_after = stop_after};
  ef_fit_result r;
  ef_status st = ef_trainer_fit(t, &h, &r);
  const ef_checkpoint_info *info = &t->info;
  if (st != EF_OK) return ef_report("train", 1);
  if (r.broken) {
    char last[4200];
    ef_run_dir_latest(last, sizeof last, t->out);
    if (l.lead)
      fprintf(stderr,
              "\neffnet train: the %s is %g at step %lld (epoch %lld, batch %lld); stopping without saving.\n"
              "The last good checkpoint is %s. Lower --lr, or add --clip.\n",
              isfinite(r.last.loss) ? "gradient norm" : "loss", isfinite(r.last.loss) ? r.last.norm : r.last.loss,
              (long long)info->step, (long long)info->epoch + 1, (long long)r.last_batch, last);
    return 1;
  }
  if (l.lead && r.after_epoch)
    printf("stopped after epoch %lld (%s); resume with: effnet train --resume %s\n", (long long)info->epoch,
           signal_name(r.signal), t->out);
  else if (l.lead && (r.signal || r.stopped))
    printf("%sstopped at step %lld (%s); resume with: effnet train --resume %s\n", l.tty ? "\n" : "",
           (long long)info->step, r.signal ? signal_name(r.signal) : "--stop-after", t->out);
  if (r.signal || r.stopped) return r.signal ? 128 + r.signal : 0;
  if (info->epoch == t->cfg.epochs && l.lead) {
    printf("done in %.1f s: best validation top-1 %.2f%%; checkpoints in %s (best.h5, ckpt-*.h5), metrics in "
           "%s/metrics.jsonl\n",
           ef_seconds() - l.t_start, 100 * info->best_top1, t->out, t->out);
    if (t->cfg.profile) ef_plan_profile_print(t->tr.plan, stdout);
  }
  return 0;
}

int ef_cmd_train(int argc, char **argv) {
  ef_flags *f = ef_xmalloc(sizeof *f);
  ef_train_args *a = ef_xcalloc(1, sizeof *a); // its values point into f, and its config into it
  int rc = ef_train_args_parse(argc, argv, a, f);
  if (!rc && getenv(EF_LAUNCH_RANK)) {
    ef_launch_follow_parent();   // a worker of --gpus: it ends with its launcher
  } else if (!rc && a->t.gpus) { // --gpus N: this process starts the workers and waits for them
    if (ef_comm_launched()) {
      fprintf(stderr,
              "effnet train: --gpus starts its own workers: under mpirun or srun, start one rank per GPU and give "
              "--device cuda instead\n");
      rc = 2;
    } else {
      rc = ef_launch_gpus("train", argc, argv, a->t.gpus, true, NULL);
    }
    free(f), free(a);
    return rc;
  }
  ef_comm *comm = NULL;
  if (!rc && ef_comm_new(&comm) != EF_OK) rc = ef_report("train", 1);
  if (rc) {
    free(f), free(a);
    return rc;
  }
  ef_trainer *t = ef_xmalloc(sizeof *t);
  ef_status st = ef_trainer_open(t, &a->t, comm);
  if (st == EF_OK && (st = ef_trainer_connect(t)) != EF_OK) { // on one rank alone, or on all: the job ends either way
    fprintf(stderr, "effnet train [rank %d]: %s\n", t->comm->rank, ef_last_error());
    ef_comm_abort(t->comm, 1);
  }
  if (st != EF_OK) {
    rc = ef_report("train", t->usage_error ? 2 : 1);
  } else {
    if (t->comm->rank == 0) {
      if ((a->t.freeze || strcmp(a->t.bn, "train") || a->t.backbone_lr != 1) && !a->t.init)
        fprintf(stderr,
                "effnet train: warning: --freeze, --bn and --backbone-lr are meant for fine-tuning, and no --init "
                "is given\n");
      print_setup(t, f);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);
    rc = train(t, a->stop_after, a->log_every);
    // mpirun ends the whole job at the first rank that exits non-zero (a stop by signal exits 130
    // or 143): no rank leaves before rank 0 has saved and its lines are out.
    fflush(stdout);
    if (t->comm->world > 1) t->comm->barrier(t->comm);
  }
  ef_trainer_close(t);
  free(t), free(f), free(a);
  return rc;
}
