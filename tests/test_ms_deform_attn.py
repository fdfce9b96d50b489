"""The deformable-attention sampler's two computations: per-level `F.grid_sample` and one weighted gather."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semsam.modeling import ms_deform_attn
from semsam.modeling.ms_deform_attn import ms_deform_attn_sample, sample_gathered, sample_per_level


def random_inputs(seed: int, batch: int, queries: int, shapes: list[tuple[int, int]], heads: int = 2):
    generator = torch.Generator().manual_seed(seed)
    length = sum(h * w for h, w in shapes)
    value = torch.randn(batch, length, heads, 4, generator=generator)
    # Beyond [0, 1] too: points partly or wholly outside a level read zeros there.
    locations = torch.rand(batch, queries, heads, len(shapes), 3, 2, generator=generator) * 1.6 - 0.3
    weights = torch.rand(batch, queries, heads, len(shapes), 3, generator=generator)
    return value, locations, weights


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 2), queries=st.integers(1, 9),
       shapes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4))
def test_gather_matches_grid_sample(seed: int, batch: int, queries: int, shapes: list[tuple[int, int]]) -> None:
    value, locations, weights = random_inputs(seed, batch, queries, shapes)
    torch.testing.assert_close(sample_gathered(value, shapes, locations, weights),
                               sample_per_level(value, shapes, locations, weights), atol=1e-5, rtol=1e-5)


def test_gather_reads_the_bilinear_neighbours() -> None:
    value = torch.arange(6.0).view(1, 6, 1, 1)  # one 2x3 level: rows (0 1 2) and (3 4 5)
    # Pixel centres sit at (i + 0.5) / size; halfway between the centres of 1 and 4, and a point outside.
    locations = torch.tensor([[[[[[1.5 / 3, 1.0 / 2]]]], [[[[-1.0, 0.5]]]]]])
    weights = torch.ones(1, 2, 1, 1, 1)
    output = sample_gathered(value, [(2, 3)], locations, weights)
    torch.testing.assert_close(output, torch.tensor([[[2.5], [0.0]]]))


def test_gradients_match_grid_sample() -> None:
    shapes = [(3, 5), (6, 4)]
    inputs = [tensor.requires_grad_() for tensor in random_inputs(3, 2, 7, shapes)]
    copies = [tensor.detach().clone().requires_grad_() for tensor in inputs]
    probe = torch.randn(2, 7, 8)
    (sample_gathered(inputs[0], shapes, inputs[1], inputs[2]) * probe).sum().backward()
    (sample_per_level(copies[0], shapes, copies[1], copies[2]) * probe).sum().backward()
    for ours, reference in zip(inputs, copies, strict=True):
        assert reference.grad.abs().max() > 0
        torch.testing.assert_close(ours.grad, reference.grad, atol=1e-4, rtol=1e-4)


def test_low_precision_values_are_gathered_in_fp32() -> None:
    shapes = [(4, 4)]
    value, locations, weights = random_inputs(5, 1, 3, shapes)
    output = sample_gathered(value.bfloat16(), shapes, locations, weights.bfloat16())
    assert output.dtype == torch.float32
    expected = sample_per_level(value.bfloat16().float(), shapes, locations, weights.bfloat16().float())
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("queries, inference, gathered", [
    (ms_deform_attn.GATHER_MIN_PAIRS // 2 - 1, True, False),
    (ms_deform_attn.GATHER_MIN_PAIRS // 2, True, True),
    (ms_deform_attn.GATHER_MIN_PAIRS // 2, False, False),  # training keeps grid_sample's gradients
])
def test_many_queries_are_gathered_at_inference(queries: int, inference: bool, gathered: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    for name in ("sample_gathered", "sample_per_level"):
        original = getattr(ms_deform_attn, name)
        monkeypatch.setattr(ms_deform_attn, name,
                            lambda *args, name=name, original=original: calls.append(name) or original(*args))
    value, locations, weights = random_inputs(0, 1, queries, [(3, 3)])  # 2 heads
    with torch.inference_mode(inference):
        ms_deform_attn_sample(value, [(3, 3)], locations, weights)
    assert calls == ["sample_gathered" if gathered else "sample_per_level"]
