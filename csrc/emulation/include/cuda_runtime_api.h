// Host emulation shim (csrc/emulation/cuda_host.h): stands in for the CUDA toolkit header <cuda_runtime_api.h>.
#pragma once
#include "../cuda_host.h"
