"""The pure-PyTorch reference ops against independent brute-force definitions."""
from __future__ import annotations


import pytest
import torch

from ldmvfi_fast.ops import decoder_output_reference, dsepconv_reference, maxvit_attention_reference
from ldmvfi_fast.ops.dsepconv_ref import tap_corners, tap_position
from ldmvfi_fast.ops.maxvit_ref import relative_position_index, window_partition, window_unpartition
from _builders import dsepconv_args


# ---------------------------------------------------------------------------------------------
# DSepConv


def _dsepconv_loop(inp, ver, hor, ox, oy, mask):
    """Scalar loop over pixels, taps and channels; the tap geometry is the one definition
    (``tap_position`` / ``tap_corners``, pinned by literal values in
    :func:`test_dsepconv_quirks_individually`)."""
    B, C, Hin, Win = inp.shape
    _, K, H, W = ver.shape
    out = torch.zeros(B, C, H, W, dtype=torch.float64)
    for b in range(B):
        for y in range(H):
            for x in range(W):
                for i in range(K):
                    for j in range(K):
                        t = i * K + j
                        # alpha (offset_x) moves rows, beta (offset_y) columns
                        top, bottom, wt, wb = tap_corners(tap_position(ox[b, t, y, x], y, i, K), Hin)
                        left, right, wl, wr = tap_corners(tap_position(oy[b, t, y, x], x, j, K), Win)
                        rows, cols = (int(top), int(bottom)), (int(left), int(right))
                        wy, wx = (float(wt), float(wb)), (float(wl), float(wr))
                        wk = float(ver[b, i, y, x] * hor[b, j, y, x] * mask[b, t, y, x])
                        for c in range(C):
                            s = sum(float(inp[b, c, rows[a], cols[d]]) * wy[a] * wx[d] for a in range(2) for d in range(2))
                            out[b, c, y, x] += s * wk
    return out


def test_dsepconv_matches_brute_force_loop():
    args = dsepconv_args(2, 3, 5, 5, 6, offset=4.0)  # large offsets: many samples clamped at the border
    torch.testing.assert_close(dsepconv_reference(*args), _dsepconv_loop(*args), rtol=1e-10, atol=1e-10)


def test_dsepconv_quirks_individually():
    B, C, H, W, K = 1, 1, 4, 4, 5
    inp = torch.arange((H + 4) * (W + 4), dtype=torch.float64).view(1, 1, H + 4, W + 4)
    one_tap = lambda t: torch.nn.functional.one_hot(torch.tensor(t), K * K).double().view(1, K * K, 1, 1).expand(1, K * K, H, W)  # noqa: E731
    ver = torch.zeros(B, K, H, W, dtype=torch.float64)
    hor = torch.zeros_like(ver)
    ver[:, 0], hor[:, 0] = 1, 1  # tap (0, 0) only
    zero = torch.zeros(B, K * K, H, W, dtype=torch.float64)
    out = dsepconv_reference(inp, ver, hor, zero, zero, one_tap(0))
    # origin shifted by one: tap (0,0) of pixel (y,x) reads padded (y-1, x-1) -> clamped at 0
    Wp = W + 4
    assert out[0, 0, 2, 3] == inp[0, 0, 1, 2]
    # offset_x (alpha) moves rows, offset_y (beta) moves columns
    dx = torch.zeros_like(zero)
    dx[:, 0] = 1.0
    assert dsepconv_reference(inp, ver, hor, dx, zero, one_tap(0))[0, 0, 2, 3] == inp[0, 0, 2, 2]
    assert dsepconv_reference(inp, ver, hor, zero, dx, one_tap(0))[0, 0, 2, 3] == inp[0, 0, 1, 3]
    # clamped sample: the edge pixel counts twice along the clamped axis
    far = torch.full_like(zero, -10.0)
    v = dsepconv_reference(inp, ver, hor, far, zero, one_tap(0))[0, 0, 2, 3]
    assert v == 2 * inp[0, 0, 0, 2]
    assert dsepconv_reference(inp, ver, hor, far, far, one_tap(0))[0, 0, 0, 0] == 4 * inp[0, 0, 0, 0]
    # the shifted origin never reaches the last padded row/column without an offset: the last
    # tap (K-1, K-1) of the last pixel reads padded (H+2, W+2) = (Hp-2, Wp-2), not (Hp-1, Wp-1)
    Hp = H + 4
    ver_last, hor_last = torch.zeros_like(ver), torch.zeros_like(hor)
    ver_last[:, K - 1], hor_last[:, K - 1] = 1, 1
    last = dsepconv_reference(inp, ver_last, hor_last, zero, zero, one_tap(K * K - 1))
    assert last[0, 0, H - 1, W - 1] == inp[0, 0, Hp - 2, Wp - 2] != inp[0, 0, Hp - 1, Wp - 1]
    # fractional offsets: bilinear weights 0.75 / 0.25 between the two rows
    quarter = torch.full_like(zero, 0.25)
    got = dsepconv_reference(inp, ver, hor, quarter, zero, one_tap(0))[0, 0, 2, 3]
    assert got == 0.75 * inp[0, 0, 1, 2] + 0.25 * inp[0, 0, 2, 2]
    # the helpers themselves, at literal values (K=5: origin shift -2 + 1 = -1)
    assert tap_position(0.0, 3, 0, 5) == 2.0 and tap_position(0.5, 3, 4, 5) == 6.5
    lo, hi, wlo, whi = tap_corners(torch.tensor([-3.0, 2.25, 9.5]), 8)
    assert lo.tolist() == [0, 2, 7] and hi.tolist() == [0, 3, 7]
    assert wlo.tolist() == [1.0, 0.75, 1.0] and whi.tolist() == [1.0, 0.25, 1.0]


def test_dsepconv_gradcheck():
    args = [a.requires_grad_() for a in dsepconv_args(1, 2, 5, 3, 3, offset=2.5, seed=1)]
    assert torch.autograd.gradcheck(dsepconv_reference, args, eps=1e-6, atol=1e-5, fast_mode=True)


def test_dsepconv_float32_and_low_precision_values():
    args = dsepconv_args(2, 3, 5, 5, 6, dtype=torch.float32)
    ref = dsepconv_reference(*[a.double() for a in args])
    torch.testing.assert_close(dsepconv_reference(*args).double(), ref, rtol=1e-5, atol=1e-5)
    for low in (torch.bfloat16, torch.float16):
        lp = [a.to(low) for a in args]
        out = dsepconv_reference(*lp)
        assert out.dtype == low
        # computed in float32 from the rounded inputs, rounded once at the end: within half
        # an ulp (relative) of the float64 result on the same rounded inputs
        exact = dsepconv_reference(*[a.double() for a in lp])
        assert ((out.double() - exact).abs() <= torch.finfo(low).eps * exact.abs() / 2 + 1e-6).all()
        # and off by no more than input rounding from the float64 result on the original inputs
        assert (out.double() - ref).abs().max() < 50 * torch.finfo(low).eps * ref.abs().max()


def test_dsepconv_bad_shapes():
    inp, ver, hor, ox, oy, mask = dsepconv_args(2, 3, 5, 5, 6)
    with pytest.raises(ValueError, match="padded by K-1"):
        dsepconv_reference(inp[..., 1:, :], ver, hor, ox, oy, mask)
    with pytest.raises(ValueError, match="offset_x must have shape"):
        dsepconv_reference(inp, ver, hor, ox[:, :5], oy, mask)


def test_decoder_output_reference_is_two_warps_plus_residual():
    a0 = dsepconv_args(1, 3, 5, 5, 6, seed=2)
    a1 = dsepconv_args(1, 3, 5, 5, 6, seed=3)
    mask = a0[5]
    f0, f1 = a0[0][..., 2:-2, 2:-2], a1[0][..., 2:-2, 2:-2]
    res = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    out = decoder_output_reference(f0, f1, *a0[1:5], *a1[1:5], mask, res)
    pad = lambda f: torch.nn.functional.pad(f, (2, 2, 2, 2), mode="replicate")  # noqa: E731
    exp = _dsepconv_loop(pad(f0), *a0[1:5], mask) + _dsepconv_loop(pad(f1), *a1[1:5], 1 - mask) + res
    torch.testing.assert_close(out, exp, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# MaxViT attention


@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("window", [2, 8])
def test_partition_roundtrip(mode, window):
    x = torch.randn(2, window * 3, window * 2, 5)
    parts = window_partition(x, window, mode)
    assert parts.shape == (2 * 3 * 2, window * window, 5)
    torch.testing.assert_close(window_unpartition(parts, window, mode, 2, window * 3, window * 2), x, rtol=0, atol=0)


def test_partition_layout_matches_definition():
    w, H, W = 2, 4, 6
    x = torch.arange(H * W).view(1, H, W, 1).float()
    blk = window_partition(x, w, "block")
    # block window (X=1, Y=2) holds rows 2..3, cols 4..5
    assert blk[1 * (W // w) + 2, :, 0].tolist() == [x[0, 2, 4, 0], x[0, 2, 5, 0], x[0, 3, 4, 0], x[0, 3, 5, 0]]
    grd = window_partition(x, w, "grid")
    # grid window (X=1, Y=2): rows 1, 1+H/w; cols 2, 2+W/w
    assert grd[1 * (W // w) + 2, :, 0].tolist() == [x[0, 1, 2, 0], x[0, 1, 5, 0], x[0, 3, 2, 0], x[0, 3, 5, 0]]


def _naive_attention(q, k, v, table, w, mode, heads):
    """Per-window, per-head loop written from the definition."""
    B, H, W, C = q.shape
    d = C // heads
    out = torch.zeros_like(q)
    nh, nw = H // w, W // w
    for b in range(B):
        for X in range(nh):
            for Y in range(nw):
                if mode == "block":
                    coords = [(X * w + i, Y * w + j) for i in range(w) for j in range(w)]
                else:
                    coords = [(i * nh + X, j * nw + Y) for i in range(w) for j in range(w)]
                for h in range(heads):
                    sl = slice(h * d, (h + 1) * d)
                    Q = torch.stack([q[b, r, c, sl] for r, c in coords]) * d ** -0.5
                    Kt = torch.stack([k[b, r, c, sl] for r, c in coords])
                    V = torch.stack([v[b, r, c, sl] for r, c in coords])
                    bias = torch.empty(w * w, w * w, dtype=q.dtype)
                    for p1 in range(w * w):
                        for p2 in range(w * w):
                            (i1, j1), (i2, j2) = divmod(p1, w), divmod(p2, w)
                            bias[p1, p2] = table[(i1 - i2 + w - 1) * (2 * w - 1) + (j1 - j2 + w - 1), h]
                    A = torch.softmax(Q @ Kt.T + bias, dim=-1)
                    for n, (r, c) in enumerate(coords):
                        out[b, r, c, sl] = A[n] @ V
    return out


@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("window,heads,d,cross", [(2, 3, 4, False), (2, 1, 8, True), (4, 2, 4, True),
                                                  (8, 1, 8, False)])
def test_attention_matches_naive_loop(mode, window, heads, d, cross):
    g = torch.Generator().manual_seed(window * 10 + heads)
    H, W = window * 2, window * 3 if window < 8 else window
    q = torch.randn(2 if window < 8 else 1, H, W, heads * d, generator=g, dtype=torch.float64)
    k = torch.randn(q.shape, generator=g, dtype=torch.float64) if cross else q
    v = torch.randn(q.shape, generator=g, dtype=torch.float64) if cross else q
    table = torch.randn((2 * window - 1) ** 2, heads, generator=g, dtype=torch.float64)
    out = maxvit_attention_reference(q, k, v, table, window, mode, heads)
    torch.testing.assert_close(out, _naive_attention(q, k, v, table, window, mode, heads), rtol=1e-10, atol=1e-10)


def test_relative_position_index_definition():
    idx = relative_position_index(3)
    assert idx.shape == (9, 9)
    assert idx[4, 4] == 2 * 5 + 2  # centre to centre: (0+2)*(5) + (0+2)
    assert idx[0, 8] == 0 and idx[8, 0] == 24


def test_attention_bad_args():
    q = torch.randn(1, 5, 8, 4)
    with pytest.raises(ValueError, match="multiples of the window"):
        maxvit_attention_reference(q, q, q, torch.zeros(9, 1), 2, "block", 1)
    q = torch.randn(1, 4, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        maxvit_attention_reference(q, q, q, torch.zeros(9, 1), 2, "diagonal", 1)
    with pytest.raises(ValueError, match="bias table"):
        maxvit_attention_reference(q, q, q, torch.zeros(9, 2), 2, "block", 1)


# ---------------------------------------------------------------------------------------------
# backend scope (use_backend / current_backend)


def _auto_choice(op, args):
    """What the automatic order picks for these tensors (first backend that accepts)."""
    from ldmvfi_fast.ops import _dispatch

    for name in _dispatch.BACKENDS:
        prov = _dispatch._provider(name)
        if not isinstance(prov, str) and prov.check(op, args) is None:
            return prov.get(op)
    raise AssertionError("reference accepts everything")


def test_use_backend_scope_nests_and_restores(monkeypatch):
    from ldmvfi_fast.ops import current_backend, pick_backend, use_backend

    monkeypatch.delenv("LDMVFI_FAST_BACKEND", raising=False)
    args = dsepconv_args(2, 3, 5, 5, 6, dtype=torch.float32)
    assert current_backend() is None
    auto = pick_backend("dsepconv", args)
    assert auto is _auto_choice("dsepconv", args)
    with use_backend("ref") as name:
        assert name == current_backend() == "reference"
        assert pick_backend("dsepconv", args) is dsepconv_reference
        with use_backend(None):
            assert current_backend() is None
            assert pick_backend("dsepconv", args) is auto
        assert pick_backend("dsepconv", args) is dsepconv_reference  # restored after the inner scope
        # an op's own backend= still wins over the scope
        assert pick_backend("dsepconv", args, "reference") is dsepconv_reference
    assert current_backend() is None and pick_backend("dsepconv", args) is auto
    with pytest.raises(ValueError, match="unknown backend"):
        with use_backend("tensorrt"):
            pass


def test_use_backend_is_strict(monkeypatch):
    from ldmvfi_fast.ops import dsepconv, use_backend

    monkeypatch.setenv("TRITON_INTERPRET", "0")  # CPU tensors: Triton refuses
    args = dsepconv_args(2, 3, 5, 5, 6, dtype=torch.float32)
    with use_backend("triton"):
        with pytest.raises(RuntimeError, match=r"'triton' \(asked for by use_backend\(\)\) cannot run dsepconv"):
            dsepconv(*args)
    with use_backend("reference"):  # the scope reaches ops called without backend=
        torch.testing.assert_close(dsepconv(*args), dsepconv_reference(*args), rtol=0, atol=0)


def test_environment_sets_only_the_default(monkeypatch, caplog):
    from ldmvfi_fast.ops import _dispatch, current_backend, pick_backend, use_backend

    args = dsepconv_args(2, 3, 5, 5, 6, dtype=torch.float32)
    monkeypatch.setenv("LDMVFI_FAST_BACKEND", "reference")
    assert current_backend() == "reference"
    assert pick_backend("dsepconv", args) is dsepconv_reference
    with use_backend(None):  # the scope asks for auto: the environment does not apply
        assert current_backend() is None
        assert pick_backend("dsepconv", args) is _auto_choice("dsepconv", args)
    # outside a scope the environment is a preference: an impossible one falls back, with a warning
    monkeypatch.setenv("LDMVFI_FAST_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(_dispatch, "_logged", set())
    with caplog.at_level("WARNING"):
        assert pick_backend("dsepconv", args) is _auto_choice("dsepconv", args)
    assert "skipping triton backend" in caplog.text


def test_use_backend_is_per_thread(monkeypatch):
    import threading

    from ldmvfi_fast.ops import current_backend, use_backend

    monkeypatch.delenv("LDMVFI_FAST_BACKEND", raising=False)
    barrier = threading.Barrier(2, timeout=10)
    seen = {}

    def worker(name):
        with use_backend(name):
            barrier.wait()  # both threads are inside their scopes now
            seen[name] = current_backend()
            barrier.wait()
        seen[f"{name} after"] = current_backend()

    with use_backend("reference"):
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("native", "triton")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert current_backend() == "reference"  # untouched by the threads' scopes
    assert seen["native"] == "native" and seen["triton"] == "triton"
    # a new thread starts outside any scope (contextvars), whatever its parent's scope was
    assert seen["native after"] is None and seen["triton after"] is None
