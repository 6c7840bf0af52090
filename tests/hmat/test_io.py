"""save/load: bitwise round trips, validation of corrupted files, atomic writes."""

import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hmat

from .conftest import make_operator


def assert_same(a, b):
    assert type(a) is type(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    da, db = a.to_dense(), b.to_dense()
    assert da.tobytes() == db.tobytes()
    if isinstance(a, hmat.HBlock):
        for p in ("row_perm", "col_perm"):
            pa, pb = getattr(a, p), getattr(b, p)
            assert (pa is None and pb is None) or np.array_equal(pa, pb)
        assert len(a.leaves()) == len(b.leaves())
        for la, lb in zip(a.leaves(), b.leaves()):
            assert (la.row_start, la.col_start, type(la.op)) == (lb.row_start, lb.col_start, type(lb.op))


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["dense", "lowrank", "lowrank0", "hblock_nested", "from_dense", "from_dense_rect", "from_kernel"]),
    dtype=st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]),
    seed=st.integers(0, 1000),
)
def test_round_trip_is_bitwise(tmp_path_factory, kind, dtype, seed):
    op, _ = make_operator(kind, dtype, seed)
    path = tmp_path_factory.mktemp("io") / "h.npz"
    hmat.save(path, op)
    back = hmat.load(path)
    assert_same(op, back)
    if isinstance(op, hmat.HBlock):
        assert back.error_estimate == op.error_estimate
        assert back.stats()["kernel_evaluations"] == op.stats()["kernel_evaluations"]
        x = np.random.default_rng(0).random(op.shape[1])
        assert (back @ x).tobytes() == (op @ x).tobytes()


def test_no_pickle_and_npz(tmp_path):
    op, _ = make_operator("from_kernel", np.float64)
    path = tmp_path / "h.npz"
    hmat.save(path, op)
    with np.load(path, allow_pickle=False) as z:
        assert "nodes" in z.files and "data" in z.files
        assert int(z["version"]) == hmat.io.FORMAT_VERSION


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            del f[k]
        else:
            f[k] = v
    with open(path, "wb") as fh:
        np.savez(fh, **f)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f: {"version": np.array(99)}, "version"),
        (lambda f: {"magic": np.array("nope")}, "not an hmat file"),
        (lambda f: {"data": f["data"][:-3]}, "offset out of range|unused"),
        (lambda f: {"data": np.concatenate([f["data"], f["data"][:2]])}, "unused"),
        (lambda f: {"nodes": f["nodes"][:-1]}, "ends early|unused"),
        (lambda f: {"row_perm": np.zeros_like(f["row_perm"])}, "permutation"),
        (lambda f: {"col_perm": f["col_perm"][:-1]}, "col_perm"),
        (lambda f: {"shape": np.array([1, 2])}, "shape"),
        (lambda f: {"dtype": np.array("int8")}, "dtype"),
        (lambda f: {"nodes": None}, "missing"),
        (lambda f: {"data": np.where(np.arange(f["data"].size) == 0, np.nan, f["data"])}, "NaN"),
        (lambda f: {"nodes": np.where(np.arange(f["nodes"].size).reshape(f["nodes"].shape) == 8, 999, f["nodes"])}, "node|tile"),
    ],
)
def test_corrupted_files_give_one_clear_error(tmp_path, change, match):
    op, _ = make_operator("from_kernel", np.float64)
    path = tmp_path / "h.npz"
    hmat.save(path, op)
    with np.load(path, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    _rewrite(path, **change(f))
    with pytest.raises(ValueError, match=match):
        hmat.load(path)


def test_truncated_file(tmp_path):
    op, _ = make_operator("from_kernel", np.float64)
    path = tmp_path / "h.npz"
    hmat.save(path, op)
    raw = path.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 5):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="corrupted|truncated"):
            hmat.load(path)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupted"):
        hmat.load(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    op, _ = make_operator("from_kernel", np.float64)
    path = tmp_path / "h.npz"
    hmat.save(path, op)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        hmat.save(path, make_operator("dense", np.float64)[0])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["h.npz"], "no temp file left behind"


def test_save_adjoint_view_and_bad_type(tmp_path):
    op, ref = make_operator("from_kernel", np.float64)
    hmat.save(tmp_path / "a.npz", op.H)
    np.testing.assert_array_equal(hmat.load(tmp_path / "a.npz").to_dense(), op.H.to_dense())
    with pytest.raises(TypeError, match="H must be"):
        hmat.save(tmp_path / "b.npz", op + op)
    assert not os.path.exists(tmp_path / "b.npz")
    with pytest.raises(FileNotFoundError):
        hmat.load(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(tmp_path / "a.npz")
