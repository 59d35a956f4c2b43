// decoder_output is forward only (inference). Registering the "not implemented" autograd
// fallback makes a backward through it raise a clear error instead of silently returning
// no gradient; the Python dispatcher (ldmvfi_fast/ops/_native.py) never routes a call
// that needs gradients here, it uses the differentiable reference instead.
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

TORCH_LIBRARY_IMPL(ldmvfi_fast, Autograd, m) {
  m.impl("decoder_output", torch::autograd::autogradNotImplementedFallback());
}
