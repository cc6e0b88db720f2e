/* Inferon C runtime: the public C API of every model.so built by `inferon compile`.
 *
 * A model.so holds one compiled model. Create a context with inferon_model_create
 * (each context owns its arena, so separate contexts may run concurrently from
 * different threads), query input/output names, shapes and dtypes, run it with
 * inferon_model_run, and free it with inferon_model_destroy.
 *
 * Every function returns INFERON_OK (0) or a negative error code; the message of
 * the last error of a context is available from inferon_model_last_error.
 */
#ifndef INFERON_RUNTIME_H
#define INFERON_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INFERON_ABI_VERSION 2
#define INFERON_MAX_RANK 8

typedef enum {
  INFERON_OK = 0,
  INFERON_ERR_NULL_ARGUMENT = -1,  /* a required pointer is NULL */
  INFERON_ERR_BAD_COUNT = -2,      /* wrong number of inputs or outputs */
  INFERON_ERR_BAD_NAME = -3,       /* a tensor name does not match the model */
  INFERON_ERR_BAD_DTYPE = -4,      /* a tensor has the wrong element type */
  INFERON_ERR_BAD_SHAPE = -5,      /* a tensor has the wrong rank or dimensions */
  INFERON_ERR_OUT_OF_MEMORY = -6,  /* the arena could not be allocated */
  INFERON_ERR_UNSUPPORTED_CPU = -7,/* the requested ISA is not available */
  INFERON_ERR_BAD_ARGUMENT = -8    /* any other invalid argument (e.g. threads < 0) */
} inferon_status;

typedef enum { INFERON_FLOAT32 = 1, INFERON_INT8 = 3, INFERON_UINT8 = 2, INFERON_INT32 = 6,
               INFERON_INT64 = 7, INFERON_BOOL = 9 /* one byte, 0 or 1 */ } inferon_dtype; /* values follow ONNX TensorProto.DataType */

/* Static description of one input or output tensor. */
typedef struct {
  const char* name;
  int32_t dtype;          /* inferon_dtype */
  int32_t rank;
  const int64_t* shape;   /* rank entries */
} inferon_tensor_info;

/* A tensor handed to inferon_model_run: caller-owned memory, dense row-major. */
typedef struct {
  const char* name;       /* may be NULL: then tensors are matched by position */
  int32_t dtype;
  int32_t rank;
  const int64_t* shape;
  void* data;
} inferon_tensor;

typedef struct inferon_model inferon_model;

/* Create a context. num_threads <= 0 means "use all cores"; more threads than the cores this
   process may run on (its CPU affinity) are capped to them (no oversubscription). */
int inferon_model_create(inferon_model** out, int num_threads);
void inferon_model_destroy(inferon_model* model);

int inferon_model_num_inputs(const inferon_model* model);
int inferon_model_num_outputs(const inferon_model* model);
/* Returns NULL when index is out of range. */
const inferon_tensor_info* inferon_model_input_info(const inferon_model* model, int index);
const inferon_tensor_info* inferon_model_output_info(const inferon_model* model, int index);

/* Run the model. Inputs and outputs are checked for count, name (if given), dtype,
 * rank, shape and non-NULL data before anything is computed. */
int inferon_model_run(inferon_model* model, const inferon_tensor* inputs, int num_inputs,
                      inferon_tensor* outputs, int num_outputs);

/* Message of the last failed call on this context ("" if none). */
const char* inferon_model_last_error(const inferon_model* model);
/* Human-readable name of a status code. */
const char* inferon_status_string(int status);
/* The instruction set the kernels dispatch to in this process: "avx512", "avx2" or "scalar". */
const char* inferon_model_isa(const inferon_model* model);
int inferon_abi_version(void);

/* Profiling. While enabled, every run adds the wall time of each kernel call (op) of the model
 * to a per-context accumulator; enabling resets it. Ops are listed in execution order. */
int inferon_model_set_profiling(inferon_model* model, int enable);
int inferon_model_num_ops(const inferon_model* model);
/* Label of op `index` (NULL when out of range) and its accumulated seconds (-1 when out of
 * range), with the number of profiled runs in *runs (may be NULL). */
const char* inferon_model_op_name(const inferon_model* model, int index);
double inferon_model_op_seconds(const inferon_model* model, int index, int64_t* runs);

#ifdef __cplusplus
}
#endif
#endif /* INFERON_RUNTIME_H */
