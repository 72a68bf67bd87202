// Error reporting. Internal bugs abort through EF_FATAL with file:line and rank; user errors
// (bad flags, bad files, out of memory) return an ef_status and leave a message, readable with
// ef_last_error(), that says what went wrong and what to do about it.
#ifndef EF_LOG_H
#define EF_LOG_H

#include <stddef.h>

#ifdef __cplusplus // the CUDA kernels' launchers report through it too
#define _Noreturn [[noreturn]]
extern "C" {
#endif

typedef enum {
  EF_OK = 0,
  EF_ERR_INVALID,     // a bad argument, flag or configuration
  EF_ERR_IO,          // a file could not be opened, read or written
  EF_ERR_FORMAT,      // a file is corrupt, truncated or of the wrong kind
  EF_ERR_NOMEM,       // an allocation failed
  EF_ERR_NUMERIC,     // a NaN or infinity where a finite number is required
  EF_ERR_UNSUPPORTED, // a backend cannot run an operation
} ef_status;

// The rank printed in messages (-1, the default, prints none). Set by the communicator.
void ef_log_set_rank(int rank);

// Records "file:line: message" as the last error of this thread and returns st.
ef_status ef_error_at(const char *file, int line, ef_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define EF_ERROR(st, ...) ef_error_at(__FILE__, __LINE__, (st), __VA_ARGS__)

// The message recorded by the last EF_ERROR on this thread ("" if none).
const char *ef_last_error(void);

// Records `message` (an ef_last_error() of another thread) as this thread's last error, as it
// is, and returns st: how a worker's error reaches the thread that reports it.
ef_status ef_error_pass(ef_status st, const char *message);

// Prints "effnet: internal error at file:line [rank r]: message" and aborts.
_Noreturn void ef_fatal_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define EF_FATAL(...) ef_fatal_at(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void ef_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define EF_ASSERT(cond, ...)                                                                                           \
  do {                                                                                                                 \
    if (!(cond)) ef_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                               \
  } while (0)

// Propagates a non-OK status to the caller.
#define EF_TRY(expr)                                                                                                   \
  do {                                                                                                                 \
    ef_status ef_try_st_ = (expr);                                                                                     \
    if (ef_try_st_ != EF_OK) return ef_try_st_;                                                                        \
  } while (0)

// Small allocations that the program cannot continue without: abort with the size on failure.
void *ef_xmalloc(size_t bytes);
void *ef_xcalloc(size_t count, size_t size);
void *ef_xrealloc(void *p, size_t bytes);
// A copy of s, and "dir/name", in memory from ef_xmalloc (release with free()).
char *ef_xstrdup(const char *s);
char *ef_path_join(const char *dir, const char *name);
// 256-byte aligned memory for large buffers (arenas, batches): NULL when it runs out, for the
// caller to report; release with free().
void *ef_aligned_alloc(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
