/* Inferon runtime: implements the public API of runtime.h on top of the descriptor that
 * the generated model.cpp defines (model_abi.h).
 *
 * Compiled as C11 with -fvisibility=hidden; INFERON_API marks what model.so exports.
 *
 * Threading: each context owns its arena, so separate contexts may run concurrently from
 * different threads. One context must not run twice at the same time; a concurrent second
 * inferon_model_run on the same context is rejected with INFERON_ERR_BAD_ARGUMENT.
 *
 * Thread placement: with more than one thread, each run pins the caller's thread to the CPU it is
 * on (its affinity mask is restored afterwards) and the OpenMP worker threads to distinct other
 * CPUs of that mask. Unpinned workers that went to sleep between runs tend to wake up on the caller's
 * CPU and share it until the scheduler migrates them: on a 2-core machine that made 2-thread
 * runs after an idle period 1.5-3x slower. INFERON_BIND=0 turns this off.
 *
 * ISA: inferon_model_create detects the CPU (AVX2+FMA, AVX-512F), lowers the level if the
 * environment variable INFERON_ISA=scalar|avx2|avx512 asks for less, caps it at what the
 * kernels implement, and publishes it with inferon_kernels_set_isa (a process-wide atomic
 * the kernels read). The last created context sets it for the whole model.so.
 */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inferon/model_abi.h"
#include "inferon/runtime.h"

#define INFERON_API __attribute__((visibility("default")))
#define ERR_LEN 512

struct inferon_model {
  const inferon_model_desc* desc;
  float* arena;
  int num_threads;
  int isa;
  atomic_int busy;
  const float** in_ptrs;
  float** out_ptrs;
  int* seen;
  double* op_seconds; /* profiling accumulators (NULL when profiling is off) */
  int64_t profiled_runs;
  char last_error[ERR_LEN];
};

/* Message of the last failed inferon_model_create on this thread (no context to hold it). */
static _Thread_local char create_error[ERR_LEN];

static int set_error(inferon_model* m, int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m ? m->last_error : create_error, ERR_LEN, fmt, ap);
  va_end(ap);
  return status;
}

static const char* isa_name(int isa) {
  switch (isa) {
    case INFERON_ISA_AVX512: return "avx512";
    case INFERON_ISA_AVX2: return "avx2";
    default: return "scalar";
  }
}

static const char* dtype_name(int dtype) {
  switch (dtype) {
    case INFERON_FLOAT32: return "float32";
    case INFERON_UINT8: return "uint8";
    case INFERON_INT8: return "int8";
    case INFERON_INT32: return "int32";
    case INFERON_INT64: return "int64";
    case INFERON_BOOL: return "bool";
    default: return "unknown";
  }
}

/* Detect the ISA, capped by the model's --target; returns a status and the level in *isa. */
static int select_isa(int* isa, int target) {
  __builtin_cpu_init();
  int detected = INFERON_ISA_SCALAR;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    detected = INFERON_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f")) detected = INFERON_ISA_AVX512;
  }
  if (detected > target) detected = target;
  int level = detected;
  const char* env = getenv("INFERON_ISA");
  if (env && *env) {
    int requested;
    if (strcmp(env, "scalar") == 0) requested = INFERON_ISA_SCALAR;
    else if (strcmp(env, "avx2") == 0) requested = INFERON_ISA_AVX2;
    else if (strcmp(env, "avx512") == 0) requested = INFERON_ISA_AVX512;
    else {
      set_error(NULL, INFERON_ERR_BAD_ARGUMENT,
                "INFERON_ISA='%s' is not one of scalar, avx2, avx512", env);
      return INFERON_ERR_BAD_ARGUMENT;
    }
    if (requested > detected) {
      set_error(NULL, INFERON_ERR_UNSUPPORTED_CPU,
                "INFERON_ISA=%s requested but this CPU (or the model's --target) only "
                "supports %s", env, isa_name(detected));
      return INFERON_ERR_UNSUPPORTED_CPU;
    }
    level = requested;
  }
  int cap = inferon_kernels_max_isa();
  if (level > cap) level = cap;
  *isa = level;
  return INFERON_OK;
}

INFERON_API int inferon_model_create(inferon_model** out, int num_threads) {
  create_error[0] = '\0';
  if (!out) return set_error(NULL, INFERON_ERR_NULL_ARGUMENT, "out is NULL");
  *out = NULL;
  int isa;
  int st = select_isa(&isa, inferon_model_descriptor()->max_isa);
  if (st != INFERON_OK) return st;

  const inferon_model_desc* desc = inferon_model_descriptor();
  inferon_model* m = (inferon_model*)calloc(1, sizeof(inferon_model));
  if (!m) return set_error(NULL, INFERON_ERR_OUT_OF_MEMORY, "cannot allocate the context");
  m->desc = desc;
  m->isa = isa;
  /* at most the cores this process may run on: more threads would only time-slice them */
  const int cores = omp_get_num_procs();
  m->num_threads = num_threads > 0 && num_threads < cores ? num_threads : cores;
  if (m->num_threads < 1) m->num_threads = 1;
  atomic_init(&m->busy, 0);

  uint64_t bytes = desc->arena_bytes < 64 ? 64 : desc->arena_bytes;
  bytes = (bytes + 63) & ~(uint64_t)63; /* aligned_alloc wants a multiple of the alignment */
  m->arena = (float*)aligned_alloc(64, (size_t)bytes);
  int n_io = desc->num_inputs + desc->num_outputs + 1;
  m->in_ptrs = (const float**)calloc((size_t)desc->num_inputs + 1, sizeof(float*));
  m->out_ptrs = (float**)calloc((size_t)desc->num_outputs + 1, sizeof(float*));
  m->seen = (int*)calloc((size_t)n_io, sizeof(int));
  if (!m->arena || !m->in_ptrs || !m->out_ptrs || !m->seen) {
    inferon_model_destroy(m);
    return set_error(NULL, INFERON_ERR_OUT_OF_MEMORY,
                     "cannot allocate the arena (%llu bytes)", (unsigned long long)bytes);
  }
  inferon_kernels_set_isa(isa);
  *out = m;
  return INFERON_OK;
}

INFERON_API void inferon_model_destroy(inferon_model* m) {
  if (!m) return;
  free(m->arena);
  free(m->in_ptrs);
  free(m->out_ptrs);
  free(m->seen);
  free(m->op_seconds);
  free(m);
}

INFERON_API int inferon_model_num_inputs(const inferon_model* m) {
  return m ? m->desc->num_inputs : INFERON_ERR_NULL_ARGUMENT;
}

INFERON_API int inferon_model_num_outputs(const inferon_model* m) {
  return m ? m->desc->num_outputs : INFERON_ERR_NULL_ARGUMENT;
}

INFERON_API const inferon_tensor_info* inferon_model_input_info(const inferon_model* m,
                                                                int index) {
  if (!m || index < 0 || index >= m->desc->num_inputs) return NULL;
  return &m->desc->inputs[index];
}

INFERON_API const inferon_tensor_info* inferon_model_output_info(const inferon_model* m,
                                                                 int index) {
  if (!m || index < 0 || index >= m->desc->num_outputs) return NULL;
  return &m->desc->outputs[index];
}

/* "[1,3,224,224]" into buf. */
static void format_shape(char* buf, size_t len, int rank, const int64_t* shape) {
  size_t pos = 0;
  pos += (size_t)snprintf(buf + pos, len - pos, "[");
  for (int i = 0; i < rank && pos < len; i++)
    pos += (size_t)snprintf(buf + pos, len - pos, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (pos < len) snprintf(buf + pos, len - pos, "]");
}

/* Check one side (inputs or outputs) and fill ptrs in model order. */
static int check_tensors(inferon_model* m, const char* kind, const inferon_tensor* ts, int n,
                         const inferon_tensor_info* infos, int expected, void** ptrs) {
  if (n != expected)
    return set_error(m, INFERON_ERR_BAD_COUNT, "expected %d %ss, got %d", expected, kind, n);
  if (n > 0 && !ts) return set_error(m, INFERON_ERR_NULL_ARGUMENT, "%ss array is NULL", kind);
  for (int j = 0; j < expected; j++) m->seen[j] = -1;
  for (int i = 0; i < n; i++) {
    const inferon_tensor* t = &ts[i];
    int j = i;
    if (t->name) {
      j = -1;
      for (int k = 0; k < expected; k++)
        if (strcmp(infos[k].name, t->name) == 0) { j = k; break; }
      if (j < 0) {
        char names[256];
        size_t pos = 0;
        names[0] = '\0';
        for (int k = 0; k < expected && pos < sizeof names; k++)
          pos += (size_t)snprintf(names + pos, sizeof names - pos, k ? ", '%s'" : "'%s'",
                                  infos[k].name);
        return set_error(m, INFERON_ERR_BAD_NAME, "%s %d: unknown name '%s' (model %ss: %s)",
                         kind, i, t->name, kind, names);
      }
    }
    const inferon_tensor_info* info = &infos[j];
    if (m->seen[j] >= 0)
      return set_error(m, INFERON_ERR_BAD_NAME, "%s '%s' (index %d) given twice (at %d and %d)",
                       kind, info->name, j, m->seen[j], i);
    m->seen[j] = i;
    if (!t->data)
      return set_error(m, INFERON_ERR_NULL_ARGUMENT, "%s '%s' (index %d): data is NULL", kind,
                       info->name, j);
    if (t->dtype != info->dtype)
      return set_error(m, INFERON_ERR_BAD_DTYPE, "%s '%s' (index %d): expected dtype %s, got %s",
                       kind, info->name, j, dtype_name(info->dtype), dtype_name(t->dtype));
    char want[160], got[160];
    format_shape(want, sizeof want, info->rank, info->shape);
    if (t->rank < 0 || t->rank > INFERON_MAX_RANK || (t->rank > 0 && !t->shape))
      return set_error(m, INFERON_ERR_BAD_SHAPE,
                       "%s '%s' (index %d): expected shape %s, got an invalid rank %d", kind,
                       info->name, j, want, (int)t->rank);
    format_shape(got, sizeof got, t->rank, t->shape);
    if (t->rank != info->rank)
      return set_error(m, INFERON_ERR_BAD_SHAPE,
                       "%s '%s' (index %d): expected rank %d (shape %s), got rank %d (shape %s)",
                       kind, info->name, j, (int)info->rank, want, (int)t->rank, got);
    for (int d = 0; d < info->rank; d++)
      if (t->shape[d] != info->shape[d])
        return set_error(m, INFERON_ERR_BAD_SHAPE,
                         "%s '%s' (index %d): expected shape %s, got %s (dimension %d)", kind,
                         info->name, j, want, got, d);
    ptrs[j] = t->data;
  }
  return INFERON_OK;
}

/* Pin the caller to the CPU it is on and OpenMP workers 1..n-1 to distinct other CPUs of the
 * affinity mask, for this run; returns 1 if the caller's mask (saved in *saved) must be restored. */
static int bind_team(int n, cpu_set_t* saved) {
  static int enabled = -1;
  if (enabled < 0) {
    const char* env = getenv("INFERON_BIND");
    enabled = !(env && strcmp(env, "0") == 0);
  }
  if (!enabled || n < 2) return 0;
  if (sched_getaffinity(0, sizeof *saved, saved) != 0) return 0;
  int cpus[CPU_SETSIZE], count = 0;
  const int here = sched_getcpu();
  if (here < 0) return 0;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, saved) && c != here) cpus[count++] = c;
  if (count == 0) return 0;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(here, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) return 0;
#pragma omp parallel num_threads(n)
  {
    const int id = omp_get_thread_num();
    if (id > 0) {
      cpu_set_t mine;
      CPU_ZERO(&mine);
      CPU_SET(cpus[(id - 1) % count], &mine);
      sched_setaffinity(0, sizeof mine, &mine); /* 0: the calling (worker) thread */
    }
  }
  return 1;
}

INFERON_API int inferon_model_run(inferon_model* m, const inferon_tensor* inputs, int num_inputs,
                                  inferon_tensor* outputs, int num_outputs) {
  if (!m) return INFERON_ERR_NULL_ARGUMENT;
  int expected_busy = 0;
  if (!atomic_compare_exchange_strong(&m->busy, &expected_busy, 1))
    return set_error(m, INFERON_ERR_BAD_ARGUMENT,
                     "this context is already running in another thread; "
                     "create one context per thread");
  const inferon_model_desc* d = m->desc;
  int st = check_tensors(m, "input", inputs, num_inputs, d->inputs, d->num_inputs,
                         (void**)m->in_ptrs);
  if (st == INFERON_OK)
    st = check_tensors(m, "output", outputs, num_outputs, d->outputs, d->num_outputs,
                       (void**)m->out_ptrs);
  if (st == INFERON_OK) {
    /* Publish this context's ISA (a no-op unless another context changed it). */
    if (inferon_kernels_get_isa() != m->isa) inferon_kernels_set_isa(m->isa);
    cpu_set_t caller_mask;
    const int bound = bind_team(m->num_threads, &caller_mask);
    d->run(m->arena, (const float* const*)m->in_ptrs, (float* const*)m->out_ptrs,
           m->num_threads, m->op_seconds);
    if (bound) sched_setaffinity(0, sizeof caller_mask, &caller_mask);
    if (m->op_seconds) m->profiled_runs++;
  }
  atomic_store(&m->busy, 0);
  return st;
}

INFERON_API const char* inferon_model_last_error(const inferon_model* m) {
  return m ? m->last_error : create_error;
}

INFERON_API const char* inferon_status_string(int status) {
  switch (status) {
    case INFERON_OK: return "INFERON_OK";
    case INFERON_ERR_NULL_ARGUMENT: return "INFERON_ERR_NULL_ARGUMENT";
    case INFERON_ERR_BAD_COUNT: return "INFERON_ERR_BAD_COUNT";
    case INFERON_ERR_BAD_NAME: return "INFERON_ERR_BAD_NAME";
    case INFERON_ERR_BAD_DTYPE: return "INFERON_ERR_BAD_DTYPE";
    case INFERON_ERR_BAD_SHAPE: return "INFERON_ERR_BAD_SHAPE";
    case INFERON_ERR_OUT_OF_MEMORY: return "INFERON_ERR_OUT_OF_MEMORY";
    case INFERON_ERR_UNSUPPORTED_CPU: return "INFERON_ERR_UNSUPPORTED_CPU";
    case INFERON_ERR_BAD_ARGUMENT: return "INFERON_ERR_BAD_ARGUMENT";
    default: return "unknown status";
  }
}

INFERON_API const char* inferon_model_isa(const inferon_model* m) {
  return isa_name(m ? m->isa : inferon_kernels_get_isa());
}

INFERON_API int inferon_abi_version(void) { return INFERON_ABI_VERSION; }

INFERON_API int inferon_model_set_profiling(inferon_model* m, int enable) {
  if (!m) return INFERON_ERR_NULL_ARGUMENT;
  free(m->op_seconds);
  m->op_seconds = NULL;
  m->profiled_runs = 0;
  if (enable && m->desc->num_ops > 0) {
    m->op_seconds = (double*)calloc((size_t)m->desc->num_ops, sizeof(double));
    if (!m->op_seconds)
      return set_error(m, INFERON_ERR_OUT_OF_MEMORY, "cannot allocate the profile");
  }
  return INFERON_OK;
}

INFERON_API int inferon_model_num_ops(const inferon_model* m) {
  return m ? m->desc->num_ops : INFERON_ERR_NULL_ARGUMENT;
}

INFERON_API const char* inferon_model_op_name(const inferon_model* m, int index) {
  if (!m || index < 0 || index >= m->desc->num_ops) return NULL;
  return m->desc->op_names[index];
}

INFERON_API double inferon_model_op_seconds(const inferon_model* m, int index, int64_t* runs) {
  if (!m || index < 0 || index >= m->desc->num_ops) return -1.0;
  if (runs) *runs = m->profiled_runs;
  return m->op_seconds ? m->op_seconds[index] : 0.0;
}
