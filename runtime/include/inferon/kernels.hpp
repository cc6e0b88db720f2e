/* Forwarding header: generated code includes "inferon/kernels.hpp"; the kernels live in
 * runtime/kernels/ (header-only C++17, see kernels.hpp there). */
#pragma once
#include "../../kernels/kernels.hpp"
