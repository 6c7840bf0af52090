import pytest
import torch

import pinn
from pinn import HMatrixLinear, MLP
from pinn.dynamic import DynamicHCompression
from pinn.train import make_model, train

D = torch.float64


def _model(rank=2, leaf=4, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MLP([2, width, width, 1], generator=g,
               hidden_layer=lambda a, b: HMatrixLinear(a, b, leaf_size=leaf, rank=rank, dtype=D,
                                                       generator=g)).double()


def _adam_state(model, steps=3):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(10, 2, dtype=D)
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    return opt


def _probe(model, dyn):
    L = model.layers[1]
    L.start_probe()
    x = torch.rand(10, 2, dtype=D)
    model(x).pow(2).sum().backward()
    dyn._G[id(L)] = L.probe.grad.clone()
    dyn._nprobe = 1
    L.stop_probe()


def test_growth_keeps_function_and_carries_adam_state():
    model = _model(rank=1)
    opt = _adam_state(model)
    dyn = DynamicHCompression(tol=1e-12, every=10, grow_rank=2, split_fraction=2.0, merge=False)
    _probe(model, dyn)
    L = model.layers[1]
    ranks0 = [d["rank"] for d in L.leaf_info() if d["kind"] == "lowrank"]
    x = torch.rand(7, 2, dtype=D)
    y0 = model(x).detach()
    entry = dyn.refine(model, opt, step=10)
    ranks1 = [d["rank"] for d in L.leaf_info() if d["kind"] == "lowrank"]
    assert entry["grown"] > 0 and sum(ranks1) > sum(ranks0)
    torch.testing.assert_close(model(x), y0, rtol=1e-10, atol=1e-10)
    # every parameter of the layer is in the optimizer with a carried-over state
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    for p in L.factors:
        assert id(p) in ids
        st = opt.state[p]
        assert float(st["step"]) == 3 and st["exp_avg"].shape == p.shape
    # training continues with the new parameters
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()


def test_recompression_moments_map_exactly():
    """m_U' = m_U T_v for a pure change of basis (no truncation)."""
    from pinn.dynamic import _Leaf, _recompress

    g = torch.Generator().manual_seed(0)
    U, V = torch.randn(8, 3, generator=g, dtype=D), torch.randn(6, 3, generator=g, dtype=D)
    mU, mV = torch.randn(8, 3, generator=g, dtype=D), torch.randn(6, 3, generator=g, dtype=D)
    mom = lambda m: {"step": torch.tensor(5.0), "exp_avg": m, "exp_avg_sq": m * m}
    lf = _Leaf("lowrank", 0, 0, 8, 6, [U, V], [mom(mU), mom(mV)], None)
    _recompress(lf, 0.0)
    U2, V2 = lf.factors
    torch.testing.assert_close(U2 @ V2.T, U @ V.T)
    # any G: grad_U' = G V' and m maps with the same linear map
    G = torch.randn(8, 6, generator=g, dtype=D)
    Tv = torch.linalg.pinv(V) @ V2
    torch.testing.assert_close(G @ V2, (G @ V) @ Tv)
    torch.testing.assert_close(lf.moments[0]["exp_avg"], mU @ Tv)


def test_split_and_merge():
    model = _model(rank=2, leaf=4, width=32)
    opt = _adam_state(model)
    L = model.layers[1]
    n0 = L.num_leaves
    x = torch.rand(5, 2, dtype=D)
    y0 = model(x).detach()
    dyn = DynamicHCompression(tol=1e-10, every=10, grow_rank=0, split_fraction=0.05, min_leaf=4,
                              merge=False)
    e = dyn.refine(model, opt)
    assert e["split"] > 0 and L.num_leaves > n0
    torch.testing.assert_close(model(x), y0, rtol=1e-8, atol=1e-8)
    # merging back: the split children of a rank-2 block form one cheaper low-rank block
    dyn2 = DynamicHCompression(tol=1e-6, every=10, grow_rank=0, split_fraction=10.0, merge=True)
    e2 = dyn2.refine(model, opt)
    assert e2["merged"] > 0 and L.num_leaves < n0 + 3 * e["split"]
    torch.testing.assert_close(model(x), y0, rtol=1e-4, atol=1e-4)
    for p in L.factors:
        assert p in opt.state


def test_budget_bytes_respected():
    model = _model(rank=3, width=32)
    opt = _adam_state(model)
    L = model.layers[1]
    budget = int(0.8 * L.nbytes)
    dyn = DynamicHCompression(tol=1e-12, every=10, budget_bytes=budget, merge=False,
                              split_fraction=10.0)
    _probe(model, dyn)
    dyn.refine(model, opt)
    assert L.nbytes <= budget


def test_dynamic_training_end_to_end():
    p = pinn.get_problem("poisson1d")
    model = make_model(p, 16, 3, seed=0, hidden_layer=lambda a, b: HMatrixLinear(a, b, leaf_size=4,
                                                                                 rank=2))
    dyn = DynamicHCompression(tol=1e-2, every=20, probe_steps=5, budget_bytes=4000)
    h = train(model, p, adam_steps=100, lbfgs_steps=10, n_collocation=32, callbacks=[dyn],
              progress=False)
    assert [e["step"] for e in dyn.log] == [20, 40, 60, 80, 100]
    assert h["loss"][-1] < h["loss"][0]
    assert sum(l.nbytes for l in model.modules() if isinstance(l, HMatrixLinear)) <= 4000


def test_bad_dynamic_input():
    with pytest.raises(ValueError, match="tol"):
        DynamicHCompression(tol=0)
    with pytest.raises(ValueError, match="every"):
        DynamicHCompression(tol=0.1, every=0)
    m = make_model("poisson1d", 8, 3)
    with pytest.raises(ValueError, match="no HMatrixLinear"):
        train(m, "poisson1d", adam_steps=2, callbacks=[DynamicHCompression(0.1)], progress=False)


class _FakeState:
    def __init__(self, model, optimizer):
        self.model, self.optimizer, self.phase = model, optimizer, "adam"


def _feed(dyn, model, opt, grads):
    """Run the callback's probe accumulation on given dense-gradient samples of layer 1."""
    L = model.layers[1]
    L.start_probe()
    st = _FakeState(model, opt)
    for g in grads:
        L.probe.grad = g.clone()
        dyn.after_backward(st)
    L.stop_probe()


def _noise_samples(shape, k, sigma, seed, signal=None):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        n = sigma * torch.randn(*shape, generator=g, dtype=D)
        out.append(n if signal is None else signal + n)
    return out


def test_noise_estimate_matches_the_variance_of_the_ema():
    """Law: for i.i.d. samples of variance s^2, the estimated noise of the bias-corrected EMA is
    s^2 * sum w_i^2 per entry (checked on the block sums within sampling error)."""
    model = _model(rank=1, width=32, leaf=8)
    opt = _adam_state(model)
    L = model.layers[1]
    dyn = DynamicHCompression(1e-3, every=20, probe_steps=20, noise_factor=2.0)
    sigma, k, b = 0.3, 20, 0.9
    _feed(dyn, model, opt, _noise_samples((32, 32), k, sigma, 0))
    dyn._nprobe = k
    M = dyn._G[id(L)] / (1 - b ** k)
    var = dyn._noise_of_mean(L, M, b)
    sw2 = (1 - b) ** 2 * (1 - b ** (2 * k)) / ((1 - b * b) * (1 - b ** k) ** 2)
    assert float(var.sum()) == pytest.approx(sigma ** 2 * sw2 * 32 * 32, rel=0.1)
    # and it matches the actual squared size of the averaged noise M
    assert float(M.pow(2).sum()) == pytest.approx(float(var.sum()), rel=0.15)


@pytest.mark.parametrize("noise_factor, grows", [(0.0, True), (2.0, False)])
def test_pure_noise_grows_ranks_only_without_the_noise_discount(noise_factor, grows):
    model = _model(rank=1, width=32, leaf=8)
    opt = _adam_state(model)
    dyn = DynamicHCompression(1e-6, every=20, probe_steps=20, noise_factor=noise_factor,
                              merge=False)
    _feed(dyn, model, opt, _noise_samples((32, 32), 20, 1.0, 1))
    dyn._nprobe = 20
    entry = dyn.refine(model, opt, step=20)
    assert (entry["grown"] > 0) == grows


def test_signal_above_the_noise_still_grows():
    model = _model(rank=1, width=32, leaf=8)
    opt = _adam_state(model)
    L = model.layers[1]
    g = torch.Generator().manual_seed(3)
    a, c = torch.randn(32, 1, generator=g, dtype=D), torch.randn(1, 32, generator=g, dtype=D)
    signal = 5.0 * a @ c / (a.norm() * c.norm())  # rank 1, Frobenius norm 5, in every block
    dyn = DynamicHCompression(1e-6, every=20, probe_steps=20, noise_factor=2.0, merge=False)
    before = sum(d["rank"] for d in L.leaf_info() if d["kind"] == "lowrank")
    _feed(dyn, model, opt, _noise_samples((32, 32), 20, 0.05, 4, signal))
    dyn._nprobe = 20
    entry = dyn.refine(model, opt, step=20)
    assert entry["grown"] > 0
    assert sum(d["rank"] for d in L.leaf_info() if d["kind"] == "lowrank") > before


def test_noise_factor_validation():
    with pytest.raises(ValueError, match="noise_factor"):
        DynamicHCompression(1e-3, noise_factor=-1.0)
    with pytest.raises(ValueError, match="noise_factor"):
        DynamicHCompression(1e-3, noise_factor=float("nan"))
    with pytest.raises(ValueError, match="probe_steps >= 2"):
        DynamicHCompression(1e-3, probe_steps=1, noise_factor=1.0)


class _HostDiscipline(torch.overrides.TorchFunctionMode):
    """Records what would break on a CUDA layer: ``Tensor.numpy`` calls and tensor factories
    without an explicit ``device`` (those allocate on the CPU whatever the layer's device)."""

    FACTORIES = {"zeros", "ones", "full", "empty", "eye", "arange", "rand", "randn", "linspace",
                 "tensor"}

    def __init__(self):
        super().__init__()
        self.bad = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name == "numpy":
            self.bad.append("Tensor.numpy")
        elif name in self.FACTORIES and getattr(torch, name, None) is func and "device" not in kwargs:
            self.bad.append(f"torch.{name} without device")
        elif name == "as_tensor" and not isinstance(args[0], torch.Tensor) and "device" not in kwargs:
            self.bad.append("torch.as_tensor of host data without device")
        return func(*args, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_refine_stays_on_the_layers_device(dtype):
    """Refinement uses torch ops on the layer's tensors (factors that require grad, float32 or
    float64) and never numpy: every path (recompress, grow, split, merge, densify, budget)
    runs under a mode that records host-only calls."""
    g = torch.Generator().manual_seed(0)
    model = MLP([2, 32, 32, 1], generator=g, hidden_layer=lambda a, b: HMatrixLinear(
        a, b, leaf_size=4, rank=3, dtype=dtype, generator=g)).to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(10, 2, dtype=dtype)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    L = model.layers[1]
    assert all(p.requires_grad for p in L.factors)
    counts = {"grown": 0, "split": 0, "merged": 0, "densified": 0}
    for tol, sf, budget in ((1e-6, 0.3, None), (0.5, 10.0, None), (1e-3, 0.5, 3000)):
        dyn = DynamicHCompression(tol=tol, every=10, grow_rank=2, split_fraction=sf, min_leaf=2,
                                  budget_bytes=budget)
        for lay in (L,):
            lay.start_probe()
        model(x).pow(2).sum().backward()
        for lay in (L,):
            dyn._G[id(lay)] = lay.probe.grad.clone()
            lay.stop_probe()
        dyn._nprobe = 1
        y0 = model(x).detach()
        with _HostDiscipline() as mode:
            entry = dyn.refine(model, opt, step=10)
        assert mode.bad == [], sorted(set(mode.bad))
        for k in counts:
            counts[k] += entry[k]
        assert all(p.dtype == dtype for p in L.factors)
        if budget is None and tol < 1e-3:  # growth, recompression and splits keep the function
            scale = float(y0.abs().max())
            eps = 1e-10 if dtype == torch.float64 else 1e-4
            assert float((model(x) - y0).detach().abs().max()) <= eps * scale
    assert all(v > 0 for v in counts.values()), counts
