"""Tests of the highway and Transformer blocks, and of chapter 4's drivers that use them."""

from __future__ import annotations

import math

import pytest
import torch

from reslab import blocks as B
from reslab import sequences as S


def test_highway_block_computes_its_formula():
    torch.manual_seed(0)
    block = B.HighwayBlock(6, gate_bias=-2.0)
    assert torch.equal(block.gate.bias, torch.full((6,), -2.0))
    x = torch.randn(5, 6)
    t = torch.sigmoid(block.gate(x))
    expected = t * torch.relu(block.transform(x)) + (1 - t) * x
    assert torch.allclose(block(x), expected, atol=1e-6)
    assert torch.allclose(block.transform_gate(x), t)


def test_highway_gate_closed_is_exactly_the_identity():
    torch.manual_seed(1)
    stack = torch.nn.Sequential(*[B.HighwayBlock(8, gate_bias=-100.0) for _ in range(40)])
    x = torch.randn(4, 8)
    assert torch.equal(stack(x), x)


def test_highway_stack_at_init_is_close_to_identity_and_closer_with_more_negative_bias():
    out = S.highway_init_gap([1, 10], [-1.0, -3.0, -6.0], width=32, n=128)
    gap, gate = out["gap"], out["gate"]
    assert gap.shape == (3, 2)
    assert float(gap[2, 1]) < 0.1  # bias -6: ten blocks stay within 10% of the input
    assert float(gap[1, 0]) < 0.1  # bias -3: one block moves the input by a few percent
    assert bool((gap[:-1] > gap[1:]).all())  # more negative bias, closer to the identity
    assert torch.allclose(gate, torch.sigmoid(torch.tensor([-1.0, -3.0, -6.0])), atol=0.02)


def test_highway_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="gate_bias must be a finite real number"):
        B.HighwayBlock(4, gate_bias=float("nan"))
    with pytest.raises(ValueError, match="x must have last dimension 4"):
        B.HighwayBlock(4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="kind must be one of"):
        S.deep_classifier("dense", 3)


def test_deep_classifier_shapes_and_parameter_counts():
    for kind in S.DEEP_KINDS:
        model = S.deep_classifier(kind, 5, 16)
        assert model(torch.randn(3, 64)).shape == (3, 10)
    plain = sum(p.numel() for p in S.deep_classifier("plain", 5, 16).parameters())
    highway = sum(p.numel() for p in S.deep_classifier("highway", 5, 16).parameters())
    assert highway - plain == 5 * (16 * 16 + 16)  # one extra gate matrix per block


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_block_attention_is_the_formula_written_out(causal):
    """softmax(q k^T / sqrt(d_h)) v per head, masked above the diagonal when causal; and its gradient."""
    torch.manual_seed(2)
    block = B.TransformerBlock(16, 4, causal=causal)
    x = torch.randn(3, 5, 16, requires_grad=True)
    q, k, v = block.qkv(x).reshape(3, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    if causal:
        scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    ref = block.proj((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(3, 5, 16))
    out = block.attention(x)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    (g_out,) = torch.autograd.grad(out, x, g, retain_graph=True)
    (g_ref,) = torch.autograd.grad(ref, x, g)
    assert torch.allclose(g_out, g_ref, atol=1e-5)
    if causal:  # the first token attends to itself only: changing later tokens leaves it unchanged
        y = x.detach().clone()
        y[:, 1:] += 1.0
        assert torch.allclose(block.attention(y)[:, 0], out[:, 0], atol=1e-6)


def test_pre_ln_block_with_zero_branches_is_the_identity_post_ln_is_not():
    torch.manual_seed(3)
    x = 3 * torch.randn(2, 4, 8) + 1
    for norm in ("pre", "post"):
        block = B.TransformerBlock(8, 2, norm=norm)
        with torch.no_grad():
            for layer in (block.proj, block.ff2):
                layer.weight.zero_()
                layer.bias.zero_()
        with torch.no_grad():
            y = block(x)
        if norm == "pre":
            assert torch.equal(y, x)  # the stream is a clean sum
        else:
            assert float((y - x).abs().max()) > 0.5  # LN sits on the stream
            assert torch.allclose(y.mean(-1), torch.zeros(2, 4), atol=1e-5)


def test_transformer_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        B.TransformerBlock(10, 4)
    with pytest.raises(ValueError, match="norm must be one of"):
        B.TransformerBlock(8, 2, norm="sandwich")
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        B.TransformerBlock(8, 2)(torch.randn(4, 8))


def test_reverse_task_and_tiny_transformer():
    tokens, targets = S.reverse_task(6, 8, 10, seed=1)
    assert torch.equal(targets[:, 0], tokens[:, -1])
    model = S.TinyTransformer(depth=2, norm="post")
    assert model(tokens).shape == (6, 8, 10)
    with pytest.raises(ValueError, match="int64"):
        model(tokens.float())


def test_pre_and_post_ln_gradient_norms_at_initialisation():
    """Xiong et al.'s theorem at a small size: the output layer's gradient is depth-independent
    for post-LN and shrinks with depth for pre-LN, so post-LN's is several times larger."""
    g = S.transformer_grad_norms([6, 24], seeds=(0, 1, 2))
    post6, post24 = float(g[("post", 6)][:, -1].mean()), float(g[("post", 24)][:, -1].mean())
    pre6, pre24 = float(g[("pre", 6)][:, -1].mean()), float(g[("pre", 24)][:, -1].mean())
    assert g[("pre", 24)].shape == (3, 24)
    assert 2 / 3 < post24 / post6 < 3 / 2
    assert pre24 / pre6 < 0.85
    assert post24 / pre24 > 2.5


def test_no_warmup_high_lr_post_ln_stalls_pre_ln_learns():
    runs = S.train_transformers(seeds=(0,), steps=40, lr=1e-2)
    post, pre = runs.losses[0, 0, -1], runs.losses[1, 0, -1]
    assert float(post) > 1.5 > 0.5 > float(pre)
    assert runs.accuracy.shape == (2, 1) and float(runs.accuracy[1, 0]) > 0.9


def test_stacked_tiny_transformers_equal_their_members():
    from reslab.train import stack_models

    models = []
    for s in (0, 1):
        torch.manual_seed(s)
        models.append(S.TinyTransformer(depth=2, norm="pre"))
    tokens, _ = S.reverse_task(5, seed=3)
    stacked = stack_models(models)
    with torch.no_grad():
        assert torch.allclose(stacked(tokens), torch.stack([m(tokens) for m in models]), atol=1e-5)
    with pytest.raises(ValueError, match="S, B"):
        stacked.network(tokens)  # inside the stack, tokens carry the member axis


def test_batched_transformer_training_equals_one_model_at_a_time():
    kw = dict(seeds=(0, 1), depth=2, steps=8, lr=3e-3, warmup=4, n_test=64)
    batched = S.train_transformers(**kw)
    loop = S.train_transformers(batched=False, **kw)
    assert torch.allclose(batched.losses, loop.losses, rtol=1e-4, atol=1e-5)
    assert torch.allclose(batched.accuracy, loop.accuracy, atol=1.5 / (64 * 8))
    assert (batched.losses[:, :, -1] < batched.losses[:, :, 0]).all()
    with pytest.raises(TypeError, match="batched"):
        S.train_transformers(batched=1)
