"""Writes the issue-12 refactor references (run once, at commit db4977d, before the refactor).

* ``hmatrixlinear_state_v1.pt``: ``HMatrixLinear`` state_dicts in the checkpoint format of
  that commit (HODLR, geometric with permutations, from_linear, after a dynamic refinement),
  with an input ``x`` and the layer output ``y`` for each;
* ``hmatrixlinear_init_v1.pt``: the factors of freshly built layers (HODLR, geometric
  glorot/zeros/projected/compressed, ``in_points``), float32 and float64;
* ``training_reference_v1.json``: loss curves of short float64 trainings (plain Adam on an
  HMatrixLinear MLP, and ``pinn.train`` with ``DynamicHCompression``).

``python tests/pinn/data/make_refactor_reference.py`` rewrites both: only do that on purpose.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))

import pinn  # noqa: E402
from pinn import MLP, HMatrixLinear  # noqa: E402
from pinn.dynamic import DynamicHCompression  # noqa: E402
from pinn.train import make_model, train  # noqa: E402

D = torch.float64
HERE = os.path.dirname(os.path.abspath(__file__))


def hodlr_net(seed=0):
    g = torch.Generator().manual_seed(seed)
    return MLP([2, 24, 20, 1], generator=g,
               hidden_layer=lambda a, b: HMatrixLinear(a, b, leaf_size=4, rank=2, dtype=D,
                                                       generator=g)).double()


def adam_curve(steps=40):
    torch.manual_seed(0)
    net = hodlr_net(1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.rand(64, 2, dtype=D, generator=torch.Generator().manual_seed(5))
    t = torch.sin(3 * x.sum(1, keepdim=True))
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (net(x) - t).pow(2).mean()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


DYNAMIC_CASES = [  # (width, leaf_size, tol, split_fraction, min_leaf, budget_bytes)
    (32, 8, 0.05, 0.3, 4, None), (32, 4, 0.02, 0.25, 2, 12000)]


def dynamic_curve(width, leaf_size, tol, split_fraction, min_leaf, budget_bytes):
    torch.manual_seed(0)
    p = pinn.get_problem("poisson1d")
    model = make_model(p, width, 3, seed=0, hidden_layer=lambda a, b: HMatrixLinear(
        a, b, leaf_size=leaf_size, rank=2, dtype=D,
        generator=torch.Generator().manual_seed(a + b))).double()
    dyn = DynamicHCompression(tol=tol, every=10, probe_steps=5, split_fraction=split_fraction,
                              min_leaf=min_leaf, budget_bytes=budget_bytes)
    h = train(model, p, adam_steps=60, lbfgs_steps=0, n_collocation=32, callbacks=[dyn],
              progress=False, eval_every=0)
    leaves = [L.leaf_info() for L in model.modules() if isinstance(L, HMatrixLinear)]
    return [float(v) for v in h["loss"]], dyn.log, leaves, model


def layers():
    out = {}
    g = torch.Generator().manual_seed(3)
    out["hodlr"] = HMatrixLinear(20, 24, leaf_size=4, rank=2, dtype=D, generator=g)
    pts_in = np.random.default_rng(0).random((30, 2))
    pts_out = np.random.default_rng(1).random((26, 2))
    out["geometric"] = HMatrixLinear(30, 26, leaf_size=4, rank=2, dtype=D, generator=g,
                                     in_points=pts_in, out_points=pts_out, eta=1.0)
    lin = torch.nn.Linear(40, 36, dtype=D)
    with torch.no_grad():
        i = torch.arange(36, dtype=D)[:, None]
        j = torch.arange(40, dtype=D)[None, :]
        lin.weight.copy_(1.0 / (1.0 + (i - j).abs()))
    out["from_linear"] = HMatrixLinear.from_linear(lin, tol=1e-3, leaf_size=8)
    return out


def init_layers():
    """Freshly initialised layers of every constructor path that draws or projects factors
    (their factors must not depend on the implementation)."""
    from pinn.geometric import geometric_hmatrix_linear

    rng = np.random.default_rng(7)
    x = rng.random((24, 2))
    y = rng.random((20, 2))
    W = rng.standard_normal((20, 24))
    out = {}
    for dt in (torch.float32, torch.float64):
        tag = str(dt).split(".")[-1]
        for init in ("glorot", "zeros"):
            out[f"geo_{init}_{tag}"] = geometric_hmatrix_linear(
                x, y, leaf_size=5, eta=1.0, rank=3, init=init, dtype=dt,
                generator=torch.Generator().manual_seed(11))
        out[f"geo_project_{tag}"] = geometric_hmatrix_linear(x, y, leaf_size=5, eta=1.0, rank=2,
                                                             init=W, dtype=dt)
        out[f"geo_tol_{tag}"] = geometric_hmatrix_linear(x, y, leaf_size=5, eta=1.0, init=W,
                                                         tol=1e-2, dtype=dt)
        out[f"points_{tag}"] = HMatrixLinear(24, 20, leaf_size=5, rank=2, dtype=dt, in_points=x,
                                             out_points=y, eta=1.0,
                                             generator=torch.Generator().manual_seed(12))
        out[f"hodlr_{tag}"] = HMatrixLinear(24, 20, leaf_size=5, rank=2, dtype=dt,
                                            generator=torch.Generator().manual_seed(13))
    return {k: {"factors": [p.detach().clone() for p in L.factors],
                "leaf_info": json.dumps(L.leaf_info()),
                "bias": None if L.bias is None else L.bias.detach().clone()}
            for k, L in out.items()}


def main():
    torch.set_num_threads(1)
    ref = {"commit": "db4977d", "adam": adam_curve()}
    ref["dynamic"] = []
    for case in DYNAMIC_CASES:
        loss, log, leaves, model = dynamic_curve(*case)
        ref["dynamic"].append({"case": case, "loss": loss, "log": log, "leaves": leaves})
        if case == DYNAMIC_CASES[0]:
            dyn_model = model
    with open(os.path.join(HERE, "training_reference_v1.json"), "w") as fh:
        json.dump(ref, fh, indent=1)
    state = {}
    lays = layers()
    lays["dynamic"] = dyn_model.layers[1]
    for name, L in lays.items():
        x = torch.rand(5, L.in_features, dtype=D, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            y = L(x.to(L.factors[0].dtype))
        state[name] = {"state_dict": L.state_dict(), "x": x, "y": y,
                       "leaf_info": json.dumps(L.leaf_info())}
    torch.save(state, os.path.join(HERE, "hmatrixlinear_state_v1.pt"))


if __name__ == "__main__":
    if sys.argv[1:] == ["init"]:  # only the init fixture (added later, also from db4977d)
        torch.save(init_layers(), os.path.join(HERE, "hmatrixlinear_init_v1.pt"))
    else:
        main()
        torch.save(init_layers(), os.path.join(HERE, "hmatrixlinear_init_v1.pt"))
