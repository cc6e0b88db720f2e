/* Minimal C host for an Inferon model.so.
 *
 *   make MODEL=/path/to/model.so && ./main [threads]
 *
 * Prints the model's inputs and outputs, runs it once with every input element set to 0.5,
 * prints the first values of each output, then shows how a bad call is reported.
 * Every API call returns an inferon_status; failures are printed with
 * inferon_status_string() and inferon_model_last_error().
 */
#include <stdio.h>
#include <stdlib.h>

#include "inferon/runtime.h"

static int64_t numel(const inferon_tensor_info* info) {
  int64_t n = 1;
  for (int d = 0; d < info->rank; d++) n *= info->shape[d];
  return n;
}

static void print_info(const char* kind, int index, const inferon_tensor_info* info) {
  printf("  %s %d: '%s' dtype=%d shape=[", kind, index, info->name, (int)info->dtype);
  for (int d = 0; d < info->rank; d++) printf(d ? ",%lld" : "%lld", (long long)info->shape[d]);
  printf("]\n");
}

static int fail(const inferon_model* model, const char* what, int status) {
  fprintf(stderr, "%s failed: %s: %s\n", what, inferon_status_string(status),
          inferon_model_last_error(model)); /* model may be NULL: last failed create */
  return 1;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 0; /* 0: all cores */
  inferon_model* model = NULL;
  int st = inferon_model_create(&model, threads);
  if (st != INFERON_OK) return fail(NULL, "inferon_model_create", st);
  printf("Inferon ABI %d, kernels: %s\n", inferon_abi_version(), inferon_model_isa(model));

  const int n_in = inferon_model_num_inputs(model), n_out = inferon_model_num_outputs(model);
  inferon_tensor* ins = calloc((size_t)n_in, sizeof *ins);
  inferon_tensor* outs = calloc((size_t)n_out, sizeof *outs);
  if (!ins || !outs) return 1;
  for (int i = 0; i < n_in; i++) {
    const inferon_tensor_info* info = inferon_model_input_info(model, i);
    print_info("input", i, info);
    if (info->dtype != INFERON_FLOAT32) {
      fprintf(stderr, "this example only feeds float32 inputs\n");
      return 1;
    }
    float* data = malloc((size_t)numel(info) * sizeof(float));
    if (!data) return 1;
    for (int64_t k = 0; k < numel(info); k++) data[k] = 0.5f;
    ins[i] = (inferon_tensor){info->name, info->dtype, info->rank, info->shape, data};
  }
  for (int i = 0; i < n_out; i++) {
    const inferon_tensor_info* info = inferon_model_output_info(model, i);
    print_info("output", i, info);
    float* data = malloc((size_t)numel(info) * sizeof(float));
    if (!data) return 1;
    outs[i] = (inferon_tensor){info->name, info->dtype, info->rank, info->shape, data};
  }

  st = inferon_model_run(model, ins, n_in, outs, n_out);
  if (st != INFERON_OK) return fail(model, "inferon_model_run", st);
  for (int i = 0; i < n_out; i++) {
    const float* y = outs[i].data;
    int64_t n = numel(inferon_model_output_info(model, i));
    printf("%s:", outs[i].name);
    for (int64_t k = 0; k < n && k < 8; k++) printf(" %.6g", y[k]);
    printf(n > 8 ? " ...\n" : "\n");
  }

  /* A call with a missing input is rejected before anything runs. */
  st = inferon_model_run(model, ins, n_in - 1, outs, n_out);
  printf("expected failure: %s: %s\n", inferon_status_string(st), inferon_model_last_error(model));

  for (int i = 0; i < n_in; i++) free(ins[i].data);
  for (int i = 0; i < n_out; i++) free(outs[i].data);
  free(ins);
  free(outs);
  inferon_model_destroy(model);
  return 0;
}
