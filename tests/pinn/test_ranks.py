"""pinn.ranks: the torch twin of hmat's rank-for-tolerance rule gives hmat's ranks."""
import numpy as np
import pytest
import torch
from hmat.linalg import rank_for_tol as hmat_rank_for_tol

from pinn.ranks import rank_for_error, rank_for_tol


def _spectra(rng):
    out = []
    for p in (0, 1, 2, 5, 17, 64):
        s = np.sort(rng.random(p) ** 3)[::-1]
        out.append(s)
        if p >= 4:
            t = s.copy()
            t[1:3] = t[1]          # ties
            t[-2:] = 0.0           # trailing zeros
            out.append(t)
            out.append(np.zeros(p))
            out.append(np.full(p, 0.5))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_ranks_as_hmat(dtype):
    rng = np.random.default_rng(0)
    n = 0
    for s in _spectra(rng):
        st = torch.tensor(s.copy(), dtype=dtype, requires_grad=True)
        host = np.asarray(st.detach().tolist(), np.float64)   # the values the tensor holds
        tail = np.sqrt(np.cumsum((host ** 2)[::-1]))[::-1] if host.size else np.zeros(0)
        # thresholds at, just below and just above every tail value, and 0
        errs = [0.0] + [float(v) for t in tail for v in (t, np.nextafter(t, 0), np.nextafter(t, 1))]
        errs += list(rng.random(5) * (tail[0] if host.size else 1.0))
        for e in errs:
            assert rank_for_error(st, e) == hmat_rank_for_tol(host, e, norm=1.0)
            n += 1
        rel = [0.0, 1e-8, 0.1, 0.5, 1.0, 2.0]
        if host.size and tail[0] > 0:  # relative thresholds at the tail values
            rel += [float(t / tail[0]) for t in tail]
        for tol in rel:
            assert rank_for_tol(st, tol) == hmat_rank_for_tol(host, tol)
    assert n > 100


def test_rule_meaning():
    s = torch.tensor([3.0, 2.0, 2.0, 0.0], dtype=torch.float64)
    assert rank_for_error(s, 0.0) == 3          # the zero tail is dropped, nothing else
    assert rank_for_error(s, 2.0) == 2          # ||s[2:]|| = 2 <= 2 (a tie is allowed)
    assert rank_for_error(s, np.nextafter(2.0, 0)) == 3
    assert rank_for_error(s, 10.0) == 0
    assert rank_for_tol(s, 1.0) == 0 and rank_for_tol(s, 0.0) == 3
    assert rank_for_error(torch.zeros(0), 0.0) == 0


def test_bad_input():
    with pytest.raises(ValueError, match="abs_err"):
        rank_for_error(torch.ones(2), -1.0)
    with pytest.raises(ValueError, match="tol"):
        rank_for_tol(torch.ones(2), float("nan"))
    with pytest.raises(ValueError, match="1-D"):
        rank_for_error(torch.ones(2, 2), 0.1)
    with pytest.raises(TypeError, match="real floating"):
        rank_for_error(torch.ones(2, dtype=torch.complex64), 0.1)
