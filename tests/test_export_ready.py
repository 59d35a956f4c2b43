"""Export readiness: encoder, one U-Net step and decoder trace with torch.export at dynamic
height and width (and batch), without graph breaks, and the exported programs compute
the same as eager at a size other than the example's."""
from __future__ import annotations

import pytest
import torch

from ldmvfi_fast.checkpoint import load_model
from ldmvfi_fast.export.specs import export_specs


@pytest.fixture(scope="module")
def specs(fixtures_dir):
    model = load_model(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt")
    return {s.name: s for s in export_specs(model)}


@pytest.mark.parametrize("name", ["encoder", "unet_step", "decoder"])
def test_torch_export_dynamic_hw(specs, name):
    s = specs[name]
    ep = torch.export.export(s.module, s.inputs, dynamic_shapes=s.dynamic_shapes, strict=False)
    user = set(ep.graph_signature.user_inputs)
    frame_like = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user
                  and len(n.meta["val"].shape) == 4]
    assert len(frame_like) == sum(t.dim() == 4 for t in s.inputs)
    for n in frame_like:  # batch, height and width stay symbolic
        shape = n.meta["val"].shape
        assert all(not isinstance(d, int) for d in (shape[0], shape[2], shape[3])), (n.name, shape)
    # run at another size: 512 x 512 instead of 512 x 768, batch 1
    def shrink(t):
        if t.dim() == 4:
            return t[:1, :, :, : t.shape[3] * 2 // 3].contiguous()
        return t[:1]
    small = tuple(shrink(t) for t in s.inputs)
    got = ep.module()(*small)
    want = s.module(*small)
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
