"""Issue 14 item 7: save/load of a trained model with its problem and config."""
import os
import stat

import numpy as np
import pytest
import torch

import pinn


def _x(d, n=13):
    return np.random.default_rng(0).uniform(-1, 1, size=(n, d))


def test_builtin_problem_round_trip(tmp_path):
    prob = pinn.problems.Burgers1D(n_initial=40, nu_init=0.02).observe(12, seed=3)
    prob.set_points(anchors=[[0.0, 0.5]])
    with torch.no_grad():
        prob.parameters()[0].fill_(0.0123)
    m = pinn.make_model(prob, [6, 7], seed=1, activation="sin", initializer="he_normal",
                        dtype=torch.float64,
                        output_transform=pinn.BoxDirichlet([-1, 0], [1, 1], dims=[0]))
    hist = {"loss": [1.0, 0.5], "phase": ["adam", "adam"]}
    pinn.save(tmp_path / "m.pt", m, prob, config={"lr": 1e-3}, history=hist, step=2)
    m2, p2, info = pinn.load(tmp_path / "m.pt")
    assert type(p2) is pinn.problems.Burgers1D and p2.n_initial == 40 and p2.nu == prob.nu
    assert float(p2.parameters()[0]) == 0.0123
    assert p2.parameters()[0] is not prob.parameters()[0]
    np.testing.assert_array_equal(p2.anchors, prob.anchors)
    (o1,), (o2,) = prob.observations, p2.observations
    assert o1.name == o2.name and np.array_equal(o1.x, o2.x) and np.array_equal(o1.target, o2.target)
    assert info == {"config": {"lr": 1e-3}, "history": hist, "step": 2, "optimizer_state": None}
    assert m2.sizes == m.sizes and m2.activation == "sin" and next(m2.parameters()).dtype == \
        torch.float64
    x = _x(2)
    np.testing.assert_array_equal(pinn.predict(m2, x), pinn.predict(m, x))
    b1 = prob.make_batch(16, 8, "sobol", 0)
    b2 = p2.make_batch(16, 8, "sobol", 0)
    for k in b1:
        for t1, t2 in zip(b1[k] if isinstance(b1[k], tuple) else (b1[k],),
                          b2[k] if isinstance(b2[k], tuple) else (b2[k],)):
            assert torch.equal(t1, t2), k


def test_user_defined_problem_needs_the_problem_again(tmp_path):
    def make():
        return pinn.define_problem(lambda x, u, du, d2u, k: du[:, 0] - k * u,
                                   pinn.Interval(0, 1), [pinn.DirichletBC(1.0)],
                                   parameters={"k": 0.3})

    prob = make()
    m = pinn.make_model(prob, 5, 1)
    pinn.save(tmp_path / "u.pt", m, prob)
    with pytest.raises(ValueError, match="user-defined problem .* pass it again"):
        pinn.load(tmp_path / "u.pt")
    fresh = make()
    m2, p2, _ = pinn.load(tmp_path / "u.pt", problem=fresh)
    assert p2 is fresh and float(fresh.parameters()[0]) == pytest.approx(0.3, abs=0)
    other = pinn.define_problem(lambda x, u, du, d2u: u, pinn.Interval(0, 1), [])
    with pytest.raises(ValueError, match="trainable parameters"):
        pinn.load(tmp_path / "u.pt", problem=other)


@pytest.mark.parametrize("make, msg", [
    (lambda: pinn.make_model("poisson1d", 8, 3,
                             hidden_layer=lambda a, b: pinn.LowRankLinear(a, b, 2)),
     "only MLPs of nn.Linear layers"),
    (lambda: pinn.make_model("poisson1d", 8, 2, output_transform=lambda x, y: x * y),
     "user function that cannot be saved"),
    (lambda: torch.nn.Linear(1, 1), "must be a pinn.MLP"),
])
def test_what_cannot_be_loaded_is_not_saved(tmp_path, make, msg):
    with pytest.raises(TypeError, match=msg):
        pinn.save(tmp_path / "m.pt", make(), "poisson1d")
    assert os.listdir(tmp_path) == []


def test_save_is_atomic_and_keeps_permissions(tmp_path):
    p = tmp_path / "m.pt"
    m = pinn.make_model("poisson1d", 4, 1, seed=0)
    pinn.save(p, m, "poisson1d")
    os.chmod(p, 0o640)
    before = p.read_bytes()
    with pytest.raises(ValueError, match="JSON-serialisable"):
        pinn.save(p, pinn.make_model("poisson1d", 4, 1, seed=1), "poisson1d",
                  config={"f": object()})
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["m.pt"]
    pinn.save(p, pinn.make_model("poisson1d", 4, 1, seed=1), "poisson1d")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640 and p.read_bytes() != before
    link = tmp_path / "link.pt"
    link.symlink_to(p)
    pinn.save(link, m, "poisson1d")
    assert link.is_symlink()  # the target was updated, not the link replaced
    assert sorted(os.listdir(tmp_path)) == ["link.pt", "m.pt"]
    with pytest.raises(ValueError, match="does not exist"):
        pinn.save(tmp_path / "no" / "m.pt", m, "poisson1d")


def test_load_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        pinn.load(tmp_path / "missing.pt")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a readable pinn model file"):
        pinn.load(tmp_path / "a.npy")
    torch.save({"format": "other"}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="not a pinn model file"):
        pinn.load(tmp_path / "b.pt")
    pinn.save(tmp_path / "c.pt", pinn.make_model("poisson1d", 4, 1), "poisson1d")
    raw = bytearray((tmp_path / "c.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "d.pt").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ValueError, match="not a readable pinn model file"):
        pinn.load(tmp_path / "d.pt")
