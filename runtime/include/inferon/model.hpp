/* Everything a generated model.cpp includes: the runtime API, the model ABI and the kernels, with
 * the heavy kernel families (INFERON_PREBUILT_KERNELS, see kernels/common.hpp) only declared: the
 * build links them from objects compiled once. One header so that the build can precompile it
 * (inferon/backend/toolchain.py: model.hpp.gch once per compiler, flags and runtime). Include it
 * first and alone. */
#pragma once
#define INFERON_PREBUILT_KERNELS 1
#include <stdint.h>
#include "inferon/runtime.h"
#include "inferon/model_abi.h"
#include "inferon/kernels.hpp"
