"""The sampler registry and the sampling options, torch-free: what ``--help``, option errors and
:class:`SamplingRequest` need before any model (or torch) loads. The samplers' code lives in
:mod:`ldmvfi_fast.sampling` and is named here as ``"module:function"`` references, imported on
first call; :mod:`ldmvfi_fast.sampling` re-exports everything here.

Defaults are written once (:data:`DEFAULT_SAMPLER`, :data:`DEFAULT_STEPS`, :data:`DEFAULT_ETA`),
the step range is checked once (:func:`check_steps`), and options a sampler does not use are
refused with the reason (:meth:`SamplingRequest.check`); the one resolution against a loaded
backbone is :func:`ldmvfi_fast.sampling.resolve_sampling`.
"""
from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .errors import OptionError

__all__ = ["DEFAULT_SAMPLER", "DEFAULT_STEPS", "DEFAULT_ETA", "STUDENT_ETA", "DEFAULT_NUM_TRAIN_STEPS", "OPTION_NAMES",
           "SPACINGS", "SamplingOptionError", "check_steps", "ddim_step_counts", "Sampler", "SAMPLERS",
           "register_sampler", "sampler_names", "get_sampler", "SamplingRequest"]


class _Ref:
    """A callable named ``"module:attr"``, imported on first call (the registry stays torch-free)."""

    __slots__ = ("ref", "_fn")

    def __init__(self, ref: str):
        self.ref, self._fn = ref, None

    def resolve(self) -> Callable:
        if self._fn is None:
            mod, _, attr = self.ref.partition(":")
            self._fn = getattr(importlib.import_module(mod), attr)
        return self._fn

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __eq__(self, other):
        return self.resolve() == (other.resolve() if isinstance(other, _Ref) else other)

    def __hash__(self):
        return hash(self.ref)

    def __repr__(self) -> str:
        return f"<{self.ref}>"


#: the teacher's defaults, the paper's: 200 DDIM steps at eta 1 (applied by :func:`resolve_sampling` only)
DEFAULT_SAMPLER = "ddim"
DEFAULT_STEPS = 200
DEFAULT_ETA = 1.0
#: a distilled student's eta when its record names none (its sampler runs deterministically, as distilled)
STUDENT_ETA = 0.0
#: the training steps T of the LDMVFI configurations: what a step count is checked against before a
#: model is loaded (the command line's early check); the model's own T is checked again once it is
DEFAULT_NUM_TRAIN_STEPS = 1000

#: the sampling options, as :class:`SamplingRequest` (and the pipeline's keywords) name them
OPTION_NAMES = ("sampler", "steps", "eta", "spacing", "timesteps")

_MARK = "\x1f"  # brackets an option's name in a SamplingOptionError's template


def _opt(name: str) -> str:
    """An option's name in a :class:`SamplingOptionError` message (rendered as the caller wants)."""
    return f"{_MARK}{name}{_MARK}"


class SamplingOptionError(OptionError):
    """A bad or inapplicable sampling option.

    The message (``str(exc)``) names options in Python keyword form (``steps``, ``eta``,
    ``sampler``, ``spacing``, ``timesteps``), as :class:`SamplingRequest` and
    :class:`~ldmvfi_fast.pipeline.Interpolator` take them. :meth:`render` names them otherwise:
    ``exc.render("--{}")`` (a format) or ``exc.render(lambda name: ...)`` gives, e.g., the
    command line's ``--steps``; :attr:`options` lists the options the message is about.
    """

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.render())

    @property
    def options(self) -> tuple[str, ...]:
        names = self.template.split(_MARK)[1::2]
        return tuple(dict.fromkeys(names))

    def render(self, flag: str | Callable[[str], str] = "{}") -> str:
        fmt = flag.format if isinstance(flag, str) else flag
        parts = self.template.split(_MARK)
        return "".join(fmt(p) if i % 2 else p for i, p in enumerate(parts))


def check_steps(steps, num_train_steps: int | None = None, *, name: str | None = None) -> int:
    """A step count as an int in [1, T] (T = ``num_train_steps``; no upper bound when None);
    :class:`SamplingOptionError` otherwise. The one check of a step count's range. ``name``:
    what the message calls it (default: the ``steps`` option)."""
    name = _opt("steps") if name is None else name
    rng = f"between 1 and {num_train_steps}" if num_train_steps is not None else "of at least 1"
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise SamplingOptionError(f"{name} must be an integer {rng}, got {steps!r}")
    steps = int(steps)
    if steps < 1 or (num_train_steps is not None and steps > num_train_steps):
        raise SamplingOptionError(f"{name} must be an integer {rng}, got {steps}")
    return steps


def _check_eta(eta, name: str | None = None) -> float:
    name = _opt("eta") if name is None else name
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real):
        raise SamplingOptionError(f"{name} must be a number in [0, 1], got {eta!r}")
    eta = float(eta)
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise SamplingOptionError(f"{name} must be a number in [0, 1] (0: deterministic, 1: the paper's DDIM), "
                                  f"got {eta}")
    return eta


def _check_spacing(spacing) -> str:
    if spacing not in SPACINGS:
        raise SamplingOptionError(f"{_opt('spacing')} must be one of {SPACINGS}, got {spacing!r}")
    return spacing


def ddim_step_counts(num_train_steps: int = DEFAULT_NUM_TRAIN_STEPS) -> tuple[int, ...]:
    """The DDIM step counts the original's uniform rule gives exactly: the divisors of T below T
    (for T = 1000: 1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500). Any other count
    either lands past T - 1 or gives another number of steps (:func:`ddim_timesteps`)."""
    return tuple(s for s in range(1, num_train_steps) if num_train_steps % s == 0)


def _uniform_timesteps(num_steps: int, num_train_steps: int) -> np.ndarray:
    """:func:`ddim_timesteps` on a checked count, without its warning."""
    c = num_train_steps // num_steps
    ts = np.asarray(list(range(0, num_train_steps, c))) + 1
    if ts[-1] >= num_train_steps:
        counts = ", ".join(str(n) for n in ddim_step_counts(num_train_steps))
        raise SamplingOptionError(
            f"{_opt('steps')} {num_steps} gives timestep {ts[-1]} >= {num_train_steps} with the original's uniform "
            f"DDIM rule; use a step count dividing {num_train_steps} ({counts}) or {_opt('spacing')} trailing")
    return ts


#: ``uniform``: the original's rule (:func:`ddim_timesteps`); ``trailing``: ``round(T - k T / S) - 1``
#: (starts at T - 1, the noisiest step; better at few steps); ``karras``: Karras et al.'s rho = 7
#: ramp in sigma = sqrt((1 - a) / a), each mapped to the nearest training timestep (log sigma), kept
#: distinct by moving a repeated one up to the next free timestep.
SPACINGS = ("uniform", "trailing", "karras")


def _check_timesteps(timesteps, num_train_steps: int | None = None, name: str | None = None) -> np.ndarray:
    """Explicit timesteps as int64 numpy: a non-empty, strictly descending list of integers in
    [0, T) (no upper bound when T is None); :class:`SamplingOptionError` otherwise."""
    name = _opt("timesteps") if name is None else name
    try:
        ts = np.asarray(timesteps)
        ok = ts.ndim == 1 and ts.size > 0 and (ts.dtype.kind in "iu" or (ts.dtype.kind == "f" and np.all(ts == np.round(ts))))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SamplingOptionError(f"{name} must be a non-empty list of integers, got {timesteps!r}")
    ts = ts.astype(np.int64)
    hi = num_train_steps - 1 if num_train_steps is not None else None
    if ts.min() < 0 or (hi is not None and ts.max() > hi):
        raise SamplingOptionError(f"{name} must lie in [0, {hi if hi is not None else 'T - 1'}], got {ts.tolist()}")
    if ts.size > 1 and not np.all(np.diff(ts) < 0):
        raise SamplingOptionError(f"{name} must be strictly descending (sampling order), got {ts.tolist()}")
    return ts


def _count_mismatch(steps: int, n: int) -> SamplingOptionError:
    return SamplingOptionError(f"{_opt('steps')} ({steps}) differs from the number of {_opt('timesteps')} given ({n})")


@dataclass(frozen=True)
class Sampler:
    """One sampler of the registry.

    Attributes:
        name: the name the pipeline (``sampler=``) and the command line (``--sampler``) use.
        description: one line for ``--help``.
        make_schedule: ``(alphas_cumprod (T,) float32, steps, eta, device) -> schedule``, plus the
            keywords ``spacing=`` and ``timesteps=`` when ``uses_spacing``; raises ``ValueError``
            (or :class:`~ldmvfi_fast.errors.OptionError`) for what it cannot do.
        sample: ``(eps_fn, x_T, schedule, *, generator, callback, return_intermediates) -> x_0``.
        uses_steps: whether it takes ``steps``; False: it runs all T training steps (``ddpm``).
        uses_eta: whether it takes ``eta`` (options a sampler does not take are refused, with the
            reason, by :meth:`SamplingRequest.check` and :func:`resolve_sampling`).
        uses_spacing: whether it takes ``spacing`` (:data:`SPACINGS`) and explicit ``timesteps``.
        default_spacing: the spacing used when none is given.
        stochastic: whether it draws noise (at any eta it accepts).
    """
    name: str
    description: str
    make_schedule: Callable | str
    sample: Callable | str
    uses_steps: bool = True
    uses_eta: bool = True
    uses_spacing: bool = False
    default_spacing: str | None = None
    stochastic: bool = False

    def __post_init__(self):  # "module:function" references become lazily imported callables
        for f in ("make_schedule", "sample"):
            if isinstance(getattr(self, f), str):
                object.__setattr__(self, f, _Ref(getattr(self, f)))


SAMPLERS: dict[str, Sampler] = {}


def register_sampler(sampler: Sampler) -> Sampler:
    """Add a sampler to :data:`SAMPLERS` (a name can be registered once)."""
    if sampler.name in SAMPLERS:
        raise ValueError(f"a sampler named {sampler.name!r} is registered already")
    SAMPLERS[sampler.name] = sampler
    return sampler


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise SamplingOptionError(f"{_opt('sampler')} must be one of {sampler_names()}, got {name!r}") from None


def _refusal(spec: Sampler, option: str, num_train_steps: int | None, whose: str = "") -> SamplingOptionError:
    """Why ``spec`` does not take ``option`` (``steps``, ``eta``, ``spacing``, ``timesteps``)."""
    name = f"{spec.name}{whose}"
    all_steps = f"all {num_train_steps if num_train_steps is not None else 'T'} training steps"
    if option == "eta":
        why = (f"{name} is deterministic and takes no {_opt('eta')}" if not spec.stochastic else
               f"{name} takes no {_opt('eta')} (its noise is fixed by the method)")
    elif option == "steps":
        why = f"{name} runs {all_steps}; {_opt('steps')} does not apply"
    else:
        why = (f"{name} takes no {_opt(option)} (it runs {all_steps})" if not spec.uses_steps else
               f"{name} takes no {_opt(option)}")
    return SamplingOptionError(why)


def _refuse_unused(spec: Sampler, given: Mapping[str, Any], num_train_steps: int | None, whose: str = "") -> None:
    """Refuse the options in ``given`` (name -> value, None = not given) that ``spec`` does not
    use: one :class:`SamplingOptionError` naming all of them, each with its reason."""
    uses = {"steps": spec.uses_steps, "eta": spec.uses_eta, "spacing": spec.uses_spacing,
            "timesteps": spec.uses_spacing}
    refused = [_refusal(spec, option, num_train_steps, whose) for option in ("steps", "eta", "spacing", "timesteps")
               if given.get(option) is not None and not uses[option]]
    if refused:
        raise SamplingOptionError("; ".join(r.template for r in refused))


@dataclass(frozen=True)
class SamplingRequest:
    """The sampling options a user asked for; each None when not given (then
    :func:`resolve_sampling` supplies it: a distilled student's, else the teacher's default).

    Attributes:
        sampler: a name of :data:`SAMPLERS`.
        steps: the number of sampling steps (U-Net calls), 1..T.
        eta: stochasticity in [0, 1] (``ddim``, ``dpmpp_2m_sde``).
        spacing: a timestep spacing of :data:`SPACINGS`.
        timesteps: explicit descending timesteps in [0, T) (then ``steps``, if given, must count
            them, and ``spacing`` is refused).

    Build it once (e.g. from the command line, before a model loads), :meth:`check` it, and hand
    it to :func:`resolve_sampling` or ``Interpolator(backbone, options=request)``.
    """
    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    spacing: str | None = None
    timesteps: tuple[int, ...] | None = None

    def given(self) -> dict:
        """The options given (name -> value)."""
        return {k: getattr(self, k) for k in OPTION_NAMES if getattr(self, k) is not None}

    def check(self, num_train_steps: int | None = None) -> "SamplingRequest":
        """Validate what needs no model and return the request normalised (``steps`` an int,
        ``eta`` a float, ``timesteps`` a tuple of ints).

        Checks types and ranges (``steps`` and ``timesteps`` against ``num_train_steps`` when
        given, e.g. :data:`DEFAULT_NUM_TRAIN_STEPS` before a model loads), refuses options the
        named sampler does not use (``ddpm`` + ``steps``, ``dpmpp_2m`` + ``eta`` ...) with the
        reason, and with ``spacing="uniform"`` and ``steps`` the original's uniform rule. What
        depends on defaults (a student's record, the teacher's) is checked by
        :func:`resolve_sampling`. Raises :class:`SamplingOptionError`.
        """
        spec = None if self.sampler is None else get_sampler(self.sampler)
        if spec is not None:
            _refuse_unused(spec, self.given(), num_train_steps)
        steps = None if self.steps is None else check_steps(self.steps, num_train_steps)
        eta = None if self.eta is None else _check_eta(self.eta)
        spacing = None if self.spacing is None else _check_spacing(self.spacing)
        ts = None
        if self.timesteps is not None:
            ts = tuple(int(t) for t in _check_timesteps(self.timesteps, num_train_steps))
            if spacing is not None:
                raise SamplingOptionError(f"{_opt('spacing')} and {_opt('timesteps')} exclude each other (explicit "
                                          "timesteps replace the spacing); give one")
            if steps is not None and steps != len(ts):
                raise _count_mismatch(steps, len(ts))
        if num_train_steps is not None and spacing == "uniform" and steps is not None:
            _uniform_timesteps(steps, num_train_steps)
        return SamplingRequest(self.sampler, steps, eta, spacing, ts)


# the built-in samplers: their code lives in ldmvfi_fast.sampling, imported when first used
_IMPL = "ldmvfi_fast.sampling"
register_sampler(Sampler("ddim", "DDIM (the paper's sampler; eta 0 is deterministic; uniform spacing as the "
                                 "original by default)", f"{_IMPL}:_ddim_make", f"{_IMPL}:ddim_sample",
                         uses_spacing=True, default_spacing="uniform", stochastic=True))
register_sampler(Sampler("ddpm", "ancestral DDPM over all training steps (takes no steps, eta or spacing)",
                         f"{_IMPL}:_ddpm_make", f"{_IMPL}:ddpm_sample", uses_steps=False, uses_eta=False,
                         stochastic=True))
register_sampler(Sampler("dpmpp_2m", "DPM-Solver++(2M): deterministic, 2nd order, for few steps (5-20; trailing "
                                     "spacing by default; takes no eta)", f"{_IMPL}:_dpmpp_2m_make",
                         f"{_IMPL}:solver_sample", uses_eta=False, uses_spacing=True, default_spacing="trailing"))
register_sampler(Sampler("dpmpp_3m", "DPM-Solver++(3M): deterministic, 3rd order multistep (trailing spacing by "
                                     "default; takes no eta)", f"{_IMPL}:_dpmpp_3m_make",
                         f"{_IMPL}:solver_sample", uses_eta=False, uses_spacing=True, default_spacing="trailing"))
register_sampler(Sampler("dpmpp_2m_sde", "DPM-Solver++(2M) SDE: stochastic, eta scales the noise (1: the SDE, "
                                         "0: dpmpp_2m)", f"{_IMPL}:_dpmpp_2m_sde_make",
                         f"{_IMPL}:solver_sample", uses_spacing=True, default_spacing="trailing", stochastic=True))
register_sampler(Sampler("consistency", "multistep consistency sampling for a consistency-distilled student "
                                        "(x0 each step, re-noised with fresh noise; trailing spacing by default; "
                                        "takes no eta)",
                         f"{_IMPL}:_consistency_make", f"{_IMPL}:solver_sample", uses_eta=False,
                         uses_spacing=True, default_spacing="trailing", stochastic=True))
