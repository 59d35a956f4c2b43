// Host emulation shim (csrc/emulation/cuda_host.h): stands in for the CUDA toolkit header <mma.h>.
#pragma once
#include "../cuda_host.h"
