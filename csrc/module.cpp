// Python module `ldmvfi_fast._C`. It exposes no Python functions: importing it loads the
// shared library, whose static initializers register the ops (TORCH_LIBRARY blocks), so
// Python reaches them as torch.ops.ldmvfi_fast.*. `import torch` must come first.
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "ldmvfi_fast native ops (torch.ops.ldmvfi_fast)",
                                          -1, nullptr};
  return PyModule_Create(&module_def);
}
}
