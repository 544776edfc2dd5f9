"""Each projector's output shape and visual token count for several patch grids."""

import pytest
import torch

from qbench.projectors import PROJECTORS, build_projector
from qbench.projectors.msc import ssd_scan
from qbench.projectors.qmamba import local_window_mask
from qbench.spec import ProjectorSpec

IN_DIM, OUT_DIM = 40, 32
OPTIONS = {"mlp": {}, "fused-mlp": {}, "ldp": {"pooled_grid": 3}, "msc": {"state": 8, "head_dim": 8},
           "qmamba": {"queries": 5, "heads": 4, "depth": 1}}


def test_every_registered_projector_is_covered():
    assert sorted(OPTIONS) == PROJECTORS.names()


@pytest.mark.parametrize("kind", sorted(OPTIONS))
@pytest.mark.parametrize("grid", [4, 6, 7])
def test_output_shape_matches_tokens_out(kind, grid):
    projector = build_projector(ProjectorSpec(kind, OPTIONS[kind]), IN_DIM, OUT_DIM)
    out = projector(torch.randn(2, grid * grid, IN_DIM))
    assert out.shape == (2, projector.tokens_out(grid), OUT_DIM)
    assert torch.isfinite(out).all()


def test_token_counts_follow_each_projectors_rule():
    assert build_projector(ProjectorSpec("mlp"), IN_DIM, OUT_DIM).tokens_out(27) == 729
    assert build_projector(ProjectorSpec("ldp", {"pooled_grid": 14}), IN_DIM, OUT_DIM).tokens_out(27) == 196
    assert build_projector(ProjectorSpec("qmamba", {"queries": 144, "heads": 4}), IN_DIM, OUT_DIM).tokens_out(27) == 144


def test_ldp_pools_and_keeps_a_depthwise_position_encoding():
    projector = build_projector(ProjectorSpec("ldp", {"pooled_grid": 2}), IN_DIM, OUT_DIM)
    assert projector.peg.groups == OUT_DIM and projector.peg.kernel_size == (3, 3)


def test_mamba2_scan_equals_the_recurrence():
    torch.manual_seed(0)
    batch, length, heads, head_dim, state = 2, 37, 3, 4, 5
    x, dt = torch.randn(batch, length, heads, head_dim), torch.rand(batch, length, heads)
    a, b, c = -torch.rand(heads), torch.randn(batch, length, state), torch.randn(batch, length, state)
    h, expected = torch.zeros(batch, heads, head_dim, state), []
    for t in range(length):
        h = h * torch.exp(dt[:, t] * a)[..., None, None] + (x[:, t] * dt[:, t, :, None])[..., None] * b[:, t, None, None]
        expected.append((h * c[:, t, None, None]).sum(-1))
    assert torch.allclose(ssd_scan(x, dt, a, b, c, chunk=8), torch.stack(expected, 1), atol=1e-5)


def test_msc_scans_both_ways():
    """Changing the last patch changes the first output token: the backward scan carries it."""
    projector = build_projector(ProjectorSpec("msc", OPTIONS["msc"]), IN_DIM, OUT_DIM).eval()
    features = torch.randn(1, 16, IN_DIM)
    changed = features.clone()
    changed[0, -1] += 1
    assert not torch.allclose(projector(features)[0, 0], projector(changed)[0, 0])


def test_qmamba_local_mask_gives_each_query_its_own_chunk():
    mask = local_window_mask(3, 9, torch.device("cpu"))
    assert (~mask).sum(1).tolist() == [3, 3, 3]
    assert (~mask[0, :3]).all() and mask[0, 3:].all()
    projector = build_projector(ProjectorSpec("qmamba", {**OPTIONS["qmamba"], "local_mask": True}), IN_DIM, OUT_DIM)
    features = torch.randn(1, 25, IN_DIM)
    changed = features.clone()
    changed[0, -1] += 5  # only the last query's chunk sees the last patch ... through cross-attention
    out, out_changed = projector(features), projector(changed)
    assert out.shape == (1, 5, OUT_DIM) and not torch.allclose(out[0, -1], out_changed[0, -1])
