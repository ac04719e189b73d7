"""fp32 linears through oneDNN: the same values and gradients as F.linear, and a clean fallback."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from r1gym.core import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch build has no working oneDNN linear")


@pytest.fixture()
def use_onednn():
    before = onednn.selected()
    onednn.select("onednn")
    yield
    onednn.select("onednn" if before else "torch")


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(5, 12), (3, 4, 12)])
def test_linear_matches_f_linear_values_and_gradients(use_onednn, shape, with_bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(7, 12, generator=g, requires_grad=True)
    b = torch.randn(7, generator=g, requires_grad=True) if with_bias else None
    grad = torch.randn(*shape[:-1], 7, generator=g)

    ours = onednn.linear(x, w, b)
    ours.backward(grad)
    got = [x.grad.clone(), w.grad.clone()] + ([b.grad.clone()] if with_bias else [])
    for t in (x, w, b):
        if t is not None:
            t.grad = None
    ref = F.linear(x, w, b)
    ref.backward(grad)
    want = [x.grad, w.grad] + ([b.grad] if with_bias else [])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_matmul_nt_with_strided_operands(use_onednn):
    a, b = torch.randn(9, 6), torch.randn(6, 11)
    torch.testing.assert_close(onednn.matmul_nt(a, b.t()), a @ b, rtol=1e-5, atol=1e-5)


def test_other_dtypes_and_autocast_take_f_linear(use_onednn, monkeypatch):
    calls = []
    monkeypatch.setattr(onednn, "_onednn", lambda *a: calls.append(1) or F.linear(*a))
    onednn.linear(torch.randn(2, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        onednn.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert calls == []
    onednn.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert calls == [1]


def test_patched_model_gives_the_same_loss_and_gradients(tiny_model_dir, use_onednn):
    from r1gym.core.models import load_model

    ids = torch.randint(5, 500, (2, 9))

    def loss_and_grads(model):
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = load_model(str(tiny_model_dir))
    patched = load_model(str(tiny_model_dir))
    assert onednn.patch(patched) == 2 * 7 + 1  # 2 layers x (q, k, v, o, gate, up, down) + the LM head
    l0, g0 = loss_and_grads(plain)
    l1, g1 = loss_and_grads(patched)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-6, msg=name)


def test_select_checks_the_mode_and_leaves_the_global_rng_alone():
    before = onednn.selected()
    try:
        with pytest.raises(ValueError, match="auto.*onednn.*torch"):
            onednn.select("mkl")
        torch.manual_seed(3)
        expected = torch.rand(3)
        torch.manual_seed(3)
        chosen = onednn.select("auto")
        assert chosen is onednn.selected()  # it returns what it chose
        assert torch.equal(torch.rand(3), expected)
        assert onednn.select("torch") is False and not onednn.selected()
    finally:
        onednn.select("onednn" if before else "torch")


@pytest.mark.parametrize("onednn_faster", [True, False])
def test_auto_keeps_whichever_product_is_faster(monkeypatch, onednn_faster):
    """``select("auto")`` times both routes and keeps the faster: each timed run reports a made-up duration
    according to whether it went through oneDNN (seen by counting ``_onednn`` calls), so the choice is known."""
    calls = []
    real = onednn._onednn
    monkeypatch.setattr(onednn, "_onednn", lambda *a: calls.append(1) or real(*a))

    def fake_speed(fn, reps=3):
        calls.clear()
        fn()
        through_onednn = bool(calls)
        return 1.0 if through_onednn == onednn_faster else 2.0

    monkeypatch.setattr(onednn, "_speed", fake_speed)
    before = onednn.selected()
    try:
        assert onednn.select("auto") is onednn_faster
        assert onednn.selected() is onednn_faster
    finally:
        onednn.select("onednn" if before else "torch")
