"""Named choices shared by the library and the command line, torch-free (``--help`` and option
errors must not import torch). Each is defined here once; the modules that act on them
(:mod:`ldmvfi_fast.padding`, :mod:`ldmvfi_fast.scene`, :mod:`ldmvfi_fast.ops`,
:mod:`ldmvfi_fast.jobs`) import it from here. Runtimes are :mod:`ldmvfi_fast.formats`',
dtypes :mod:`ldmvfi_fast.dtypes`', samplers :mod:`ldmvfi_fast.samplers`'."""
from __future__ import annotations

__all__ = ["PADDING_MODES", "BACKENDS", "DEFAULT_SCENE_THRESHOLD", "MULTI"]

#: ``reference``: pad as the original does; ``minimal``: to multiples of the pad unit (faster)
PADDING_MODES = ("reference", "minimal")
#: op backends, in the default order of preference
BACKENDS = ("native", "triton", "reference")
#: scene-cut threshold of :class:`ldmvfi_fast.scene.SceneDetector` (see there for how it was set)
DEFAULT_SCENE_THRESHOLD = 0.15
#: frame-rate multipliers (recursive bisection)
MULTI = (2, 4, 8)
