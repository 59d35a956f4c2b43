"""Triton kernels vs the PyTorch references, under the Triton interpreter on CPU tensors.

Run as a script (``tests/test_triton_ops.py`` spawns it in a subprocess, because
``TRITON_INTERPRET=1`` must be set before triton is imported and the pytest process may
have imported triton already). Prints one line per check with its max error and exits 1
if any check fails. Shapes are tiny: interpreted Triton is slow.
"""
from __future__ import annotations

import os
import sys
import time

if "triton" in sys.modules:
    raise SystemExit("triton was imported before TRITON_INTERPRET could be set")
os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from ldmvfi_fast import ops  # noqa: E402
from ldmvfi_fast.ops.decoder_output_ref import decoder_output_reference  # noqa: E402
from ldmvfi_fast.ops.dsepconv_ref import dsepconv_reference, tap_position  # noqa: E402
from ldmvfi_fast.ops.maxvit_ref import maxvit_attention_reference  # noqa: E402
from ldmvfi_fast.ops.triton_kernels import IMPLS  # noqa: E402

from _builders import decoder_args, dsepconv_args  # noqa: E402  (tests/ is sys.path[0])

tri_dsepconv = IMPLS["dsepconv"]
tri_decoder_output = IMPLS["decoder_output"]
tri_maxvit = IMPLS["maxvit_attention"]

FAILURES: list[str] = []
LOW = (torch.float16, torch.bfloat16)


def report(name: str, err: float, tol: float) -> None:
    ok = err <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name:<58} max_err={err:.3e} tol={tol:.1e}", flush=True)
    if not ok:
        FAILURES.append(name)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def low_precision_tol(out, ref32, ref_low) -> float:
    """Kernel error in fp16/bf16: within 2x PyTorch's own error in that dtype, plus one
    rounding of the output to that dtype (the kernel rounds once, at the store)."""
    return 2.0 * max_err(ref_low, ref32) + torch.finfo(out.dtype).eps * ref32.abs().max().item()


def dsepconv_inputs(B, C, H, W, K=5, dtype=torch.float32, noncontig=True, seed=0):
    """The shared builder (tests/_builders.py): channel-last input, heads ~ N(0, 1/K^2)."""
    return list(dsepconv_args(B, C, K, H, W, dtype=dtype, seed=seed, channels_last=noncontig, kernel_scale=1 / K))


def count_clamped(ox, oy, H, W, K):
    taps = torch.arange(K, dtype=torch.float32)
    ys = torch.arange(H, dtype=torch.float32).view(1, 1, 1, H, 1)
    xs = torch.arange(W, dtype=torch.float32).view(1, 1, 1, 1, W)
    uy = tap_position(ox.float().view(-1, K, K, H, W), ys, taps.view(1, K, 1, 1, 1), K)
    ux = tap_position(oy.float().view(-1, K, K, H, W), xs, taps.view(1, 1, K, 1, 1), K)
    return int(((uy < 0) | (uy > H + K - 2)).sum() + ((ux < 0) | (ux > W + K - 2)).sum())


def check_dsepconv_forward():
    for (B, C, H, W) in [(2, 3, 7, 9), (1, 20, 5, 6)]:
        args = dsepconv_inputs(B, C, H, W)
        assert count_clamped(args[3], args[4], H, W, 5) > 0
        assert not args[0].is_contiguous()
        out = tri_dsepconv(*args)
        report(f"dsepconv fwd fp32 B{B} C{C} {H}x{W} non-contiguous", max_err(out, dsepconv_reference(*args)), 1e-5)
    args = dsepconv_inputs(2, 3, 7, 9, noncontig=False)
    for dt in LOW:
        low = [t.to(dt) for t in args]
        out = tri_dsepconv(*low)
        ref32 = dsepconv_reference(*[t.float() for t in low])
        assert out.dtype == dt
        report(f"dsepconv fwd {str(dt)[6:]}", max_err(out, ref32), low_precision_tol(out, ref32, dsepconv_reference(*low)))
    empty = dsepconv_inputs(0, 3, 4, 5)
    out = tri_dsepconv(*empty)
    report("dsepconv fwd batch 0", float(tuple(out.shape) != (0, 3, 4, 5)), 0.0)


def check_dsepconv_backward():
    args = dsepconv_inputs(2, 3, 6, 7)
    ref_args = [t.clone().requires_grad_() for t in args]
    tri_args = [t.clone().requires_grad_() for t in args]
    ref = dsepconv_reference(*ref_args)
    gout = torch.randn_like(ref)
    ref.backward(gout)
    tri_dsepconv(*tri_args).backward(gout)
    for name, a, b in zip(("input", "vertical", "horizontal", "offset_x", "offset_y", "mask"), tri_args, ref_args):
        scale = b.grad.abs().max().item()
        report(f"dsepconv bwd fp32 grad {name} (|g|max={scale:.1f})", max_err(a.grad, b.grad), 1e-5 * max(1.0, scale))
    # only the heads need grad: the input-grad atomics are skipped
    tri_args = [args[0]] + [t.clone().requires_grad_() for t in args[1:]]
    tri_dsepconv(*tri_args).backward(gout)
    report("dsepconv bwd fp32 heads only (grad offset_y)", max_err(tri_args[4].grad, ref_args[4].grad),
           1e-5 * max(1.0, ref_args[4].grad.abs().max().item()))


def decoder_inputs(B, C, H, W, K=5, dtype=torch.float32, seed=1):
    """The shared builder: non-contiguous frames, heads ~ N(0, 1/K^2)."""
    return list(decoder_args(B, C, K, H, W, dtype=dtype, seed=seed, noncontig_frames=True, kernel_scale=1 / K))


def check_decoder_output():
    args = decoder_inputs(2, 3, 7, 9)
    report("decoder_output fwd fp32 non-contiguous frames",
           max_err(tri_decoder_output(*args), decoder_output_reference(*args)), 1e-5)
    for dt in LOW:
        low = [t.to(dt) for t in args]
        out = tri_decoder_output(*low)
        ref32 = decoder_output_reference(*[t.float() for t in low])
        report(f"decoder_output fwd {str(dt)[6:]}", max_err(out, ref32),
               low_precision_tol(out, ref32, decoder_output_reference(*low)))
    args = decoder_inputs(1, 3, 5, 6)
    ref_args = [t.clone().requires_grad_() for t in args]
    tri_args = [t.clone().requires_grad_() for t in args]
    ref = decoder_output_reference(*ref_args)
    gout = torch.randn_like(ref)
    ref.backward(gout)
    tri_decoder_output(*tri_args).backward(gout)
    err = max(max_err(a.grad, b.grad) / max(1.0, b.grad.abs().max().item()) for a, b in zip(tri_args, ref_args))
    report("decoder_output bwd fp32 (all 12 grads, relative)", err, 1e-5)


def check_maxvit():
    cases = [  # (B, H, W, heads, head_dim, window)
        (2, 4, 6, 2, 32, 2),
        (1, 8, 16, 2, 32, 8),
        (1, 8, 8, 1, 256, 8),  # head_dim 256: one window, one head
        (1, 2, 2, 1, 256, 2),
    ]
    g = torch.Generator().manual_seed(2)
    for B, H, W, heads, d, win in cases:
        C = heads * d
        table = torch.randn((2 * win - 1) ** 2, heads, generator=g)
        for mode in ("block", "grid"):
            for cross in (False, True):
                q = torch.randn(B, H, W, C, generator=g)
                if cross:  # k, v from a context tensor; v non-contiguous
                    k = torch.randn(B, H, W, C, generator=g)
                    v = torch.randn(B, W, H, C, generator=g).transpose(1, 2)
                else:
                    k = v = q
                out = tri_maxvit(q, k, v, table, win, mode, heads)
                ref = maxvit_attention_reference(q, k, v, table, win, mode, heads)
                report(f"maxvit {mode:5s} w{win} d{d} h{heads} {'cross' if cross else 'self '} fp32",
                       max_err(out, ref), 1e-5)
    for dt in LOW:
        B, H, W, heads, d, win = 1, 8, 8, 2, 32, 2
        q, k, v = [torch.randn(B, H, W, heads * d, generator=g).to(dt) for _ in range(3)]
        table = torch.randn(9, heads, generator=g)
        out = tri_maxvit(q, k, v, table, win, "grid", heads)
        ref32 = maxvit_attention_reference(q.float(), k.float(), v.float(), table, win, "grid", heads)
        report(f"maxvit grid w2 d32 {str(dt)[6:]}", max_err(out, ref32),
               low_precision_tol(out, ref32, maxvit_attention_reference(q, k, v, table, win, "grid", heads)))


def check_dispatch():
    args = dsepconv_inputs(1, 3, 4, 5)
    avail = ops.available_backends("dsepconv", args)
    report("dispatch: triton accepts CPU dsepconv under the interpreter", float(avail["triton"] is not None), 0.0)
    out = ops.dsepconv(*args, backend="triton")
    report("dispatch: ops.dsepconv(backend='triton')", max_err(out, dsepconv_reference(*args)), 1e-5)
    q = torch.randn(1, 4, 4, 64, requires_grad=True)
    table = torch.zeros(9, 2)
    reason = ops.available_backends("maxvit_attention", (q, q, q, table), window=2, mode="block",
                                    num_heads=2)["triton"]
    report("dispatch: triton refuses maxvit with autograd", float(not reason or "backward" not in reason), 0.0)


KERNELS = {  # module -> its @triton.jit kernels
    "ldmvfi_fast.ops.triton_kernels.dsepconv": ("_dsepconv_fwd_kernel", "_dsepconv_bwd_kernel",
                                                "_decoder_output_kernel"),
    "ldmvfi_fast.ops.triton_kernels.maxvit_attention": ("_maxvit_attn_kernel",),
}
REFERENCES = {  # module -> reference functions that a Triton path must not call
    "ldmvfi_fast.ops.dsepconv_ref": ("dsepconv_reference",),
    "ldmvfi_fast.ops.decoder_output_ref": ("decoder_output_reference", "dsepconv_reference"),
    "ldmvfi_fast.ops.maxvit_ref": ("maxvit_attention_reference",),
    "ldmvfi_fast.ops": ("dsepconv_reference", "decoder_output_reference", "maxvit_attention_reference"),
}


def _instrument() -> tuple[dict, dict, list]:
    """Count launches of every @triton.jit kernel (their ``run``, which ``kernel[grid](...)``
    calls) and calls of the reference functions. Returns (launches, ref_calls, undo list)."""
    import importlib
    from collections import Counter

    launches, ref_calls, undo = Counter(), Counter(), []
    for modname, names in KERNELS.items():
        mod = importlib.import_module(modname)
        for name in names:
            kernel = getattr(mod, name)
            orig = kernel.run

            def run(*a, _orig=orig, _name=name, **kw):
                launches[_name] += 1
                return _orig(*a, **kw)

            kernel.run = run
            undo.append((kernel, "run", orig))
    for modname, names in REFERENCES.items():
        mod = importlib.import_module(modname)
        for name in names:
            orig = getattr(mod, name)

            def ref(*a, _orig=orig, _name=name, **kw):
                ref_calls[_name] += 1
                return _orig(*a, **kw)

            setattr(mod, name, ref)
            undo.append((mod, name, orig))
    return launches, ref_calls, undo


def check_kernels_really_run():
    """Each Triton entry point launches its kernel and never calls the reference: a
    wrapper that quietly returned the reference would pass every accuracy check."""
    d_args = dsepconv_inputs(1, 3, 4, 5)
    o_args = decoder_inputs(1, 3, 4, 5)
    q = torch.randn(1, 4, 4, 64)
    m_args = (q, q, q, torch.randn(9, 2), 2, "block", 2)
    expected = {"dsepconv": dsepconv_reference(*d_args), "decoder_output": decoder_output_reference(*o_args),
                "maxvit_attention": maxvit_attention_reference(*m_args)}
    cases = [  # (label, call, kernels that must run, reference output)
        ("dsepconv", lambda: tri_dsepconv(*d_args), ("_dsepconv_fwd_kernel",), "dsepconv"),
        ("dsepconv via ops.dsepconv(backend='triton')", lambda: ops.dsepconv(*d_args, backend="triton"),
         ("_dsepconv_fwd_kernel",), "dsepconv"),
        ("decoder_output", lambda: tri_decoder_output(*o_args), ("_decoder_output_kernel",), "decoder_output"),
        ("maxvit_attention", lambda: tri_maxvit(*m_args), ("_maxvit_attn_kernel",), "maxvit_attention"),
    ]
    launches, ref_calls, undo = _instrument()
    try:
        for label, call, kernels, ref_name in cases:
            launches.clear()
            ref_calls.clear()
            with torch.no_grad():
                out = call()
            missing = [k for k in kernels if launches[k] == 0]
            report(f"launch: {label} ran {'+'.join(kernels)}", float(len(missing)), 0.0)
            report(f"launch: {label} called no reference ({dict(ref_calls) or 'none'})", float(sum(ref_calls.values())), 0.0)
            report(f"launch: {label} output = reference", max_err(out, expected[ref_name]), 1e-5)
        # backward: the Triton backward kernel runs, the reference does not
        launches.clear()
        ref_calls.clear()
        leaves = [t.clone().requires_grad_() for t in d_args]
        tri_dsepconv(*leaves).sum().backward()
        report("launch: dsepconv backward ran _dsepconv_bwd_kernel", float(launches["_dsepconv_bwd_kernel"] == 0), 0.0)
        report("launch: dsepconv backward called no reference", float(sum(ref_calls.values())), 0.0)
    finally:
        for obj, name, orig in reversed(undo):
            setattr(obj, name, orig)


def main() -> int:
    t_all = time.perf_counter()
    for check in (check_kernels_really_run, check_dsepconv_forward, check_dsepconv_backward, check_decoder_output,
                  check_maxvit, check_dispatch):
        t0 = time.perf_counter()
        try:
            with torch.no_grad() if check in (check_dsepconv_forward, check_maxvit) else torch.enable_grad():
                check()
        except Exception as exc:  # report and keep going
            import traceback

            traceback.print_exc()
            FAILURES.append(f"{check.__name__}: {type(exc).__name__}: {exc}")
        print(f"     {check.__name__} took {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"total {time.perf_counter() - t_all:.1f}s; {len(FAILURES)} failure(s)")
    for f in FAILURES:
        print("FAILED:", f)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
