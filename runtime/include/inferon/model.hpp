/* Everything a generated model.cpp includes, as one header so that the build can precompile it
 * (inferon/backend/toolchain.py builds model.hpp.gch once per compiler, flags and runtime tree;
 * a model build then skips parsing the kernels). Include it first and alone. */
#pragma once
#include <stdint.h>
#include "inferon/runtime.h"
#include "inferon/model_abi.h"
#include "inferon/kernels.hpp"
