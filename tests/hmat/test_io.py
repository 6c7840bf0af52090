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
        assert a.partition == b.partition  # leaf kinds (admissible or not) included
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
        (lambda f: {"leaf_kind": f["leaf_kind"][:-1]}, "leaf_kind"),
        (lambda f: {"leaf_kind": _bump(f["leaf_kind"], 0, 0)}, "leaf_kind"),
        (lambda f: {"leaf_kind": f["leaf_kind"].astype(np.int32)}, "leaf_kind"),
        (lambda f: {"version": np.array(3)}, "leaf kinds in a file of version 3"),
    ],
)
def test_corrupted_files_give_one_clear_error(tmp_path, change, match):
    op = full_storage_operator()
    path = tmp_path / "h.npz"
    hmat.save(path, op)
    with np.load(path, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    _rewrite(path, **change(f))
    with pytest.raises(ValueError, match=match):
        hmat.load(path)


def full_storage_operator():
    """A from_kernel operator with every leaf stored in float64 (the format-1 layout)."""
    pts = np.random.default_rng(0).random((300, 3))
    return hmat.from_kernel(hmat.kernels.Matern(0.5, nu=1.5), pts, tol=1e-4, leaf_size=16, precision="full",
                            symmetric=False)


def _bump(a, idx, value):
    a = a.copy()
    a[idx] = value
    return a


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f: {"data_lo": f["data_lo"][:-3]}, "offset|unused"),
        (lambda f: {"data_lo": np.concatenate([f["data_lo"], f["data_lo"][:2]])}, "unused"),
        (lambda f: {"data_lo": np.where(np.arange(f["data_lo"].size) == 0, np.inf, f["data_lo"])}, "NaN or Inf"),
        (lambda f: {"data_lo": f["data_lo"].astype(np.float64)}, "data_lo"),
        (lambda f: {"storage": _bump(f["storage"], (5, 1), f["storage"][5, 1] + 1)}, "offset"),
        (lambda f: {"storage": _bump(f["storage"], (6, 0), f["storage"][6, 1])}, "leaves|leaf|dense"),
        (lambda f: {"storage": _bump(f["storage"], 7, -1)}, "leaves missing|differ"),
        (lambda f: {"storage": _bump(f["storage"], (0, 0), 7)}, "position|differ"),
        (lambda f: {"storage": f["storage"][:8]}, "storage table"),
        (lambda f: {"segments": f["segments"][:-1]}, "segments"),
        (lambda f: {"segments": None}, "incomplete"),
        (lambda f: {"symmetry": np.array("skew")}, "symmetry"),
        (lambda f: {"symmetry": np.array("none")}, "without symmetry"),
        (lambda f: {"version": np.array(1)}, "version-1"),
    ],
)
def test_corrupted_storage_arrays_give_one_clear_error(tmp_path, change, match):
    """Files of symmetric, mixed-precision operators: every storage array is validated."""
    op, _ = make_operator("from_kernel", np.float64)
    assert op.symmetry == "symmetric" and op.stats()["nbytes_by_dtype"].get("float32")
    path = tmp_path / "h.npz"
    hmat.save(path, op)
    with np.load(path, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    changes = change(f)
    if "segments" in changes and changes["segments"] is None:
        f.pop("segments")
        changes = {"segments": None, "manifest": np.array(sorted(k for k in f))}
    _rewrite(path, **changes)
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


# ----------------------------------------------------------------- hardening (issue 11)
def _small_h(dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(7)
    D = hmat.Dense(rng.standard_normal((3, 3)).astype(dtype) * scale)
    L = hmat.LowRank(rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal((4, 2)).astype(dtype))
    return hmat.HBlock([[D, L]], row_perm=np.array([2, 0, 1]))


@settings(max_examples=25, deadline=None)
@given(exponent=st.integers(39, 308), sign=st.sampled_from([1.0, -1.0]), kind=st.sampled_from(["dense", "lowrank", "hblock"]))
def test_astype_refuses_overflow_and_save_never_writes_inf(tmp_path_factory, exponent, sign, kind):
    """Law: astype either gives finite data or raises ValueError naming the dtype; nothing
    with Inf is ever saved (values beyond float32's 3.4e38)."""
    big = sign * 10.0**exponent
    a = np.ones((3, 3)) * big
    op = {"dense": lambda: hmat.Dense(a),
          "lowrank": lambda: hmat.LowRank(a[:, :1], np.ones((3, 1))),
          "hblock": lambda: hmat.HBlock([[hmat.Dense(a), hmat.Dense(np.ones((3, 1)))]])}[kind]()
    with pytest.raises(ValueError, match="float32"):
        op.astype(np.float32)
    with pytest.raises(ValueError, match="complex64"):
        op.astype(np.complex64)
    path = tmp_path_factory.mktemp("ovf") / "h.npz"
    hmat.save(path, op)  # float64 holds it: saved and read back exactly
    assert hmat.load(path).to_dense().tobytes() == op.to_dense().tobytes()


def test_save_refuses_nonfinite_data(tmp_path):
    H = _small_h()
    leaf = H.leaves()[0].op
    leaf.array[0, 0] = np.inf  # only reachable by writing into the operator's own storage
    with pytest.raises(ValueError, match="NaN or Inf"):
        hmat.save(tmp_path / "h.npz", H)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", [
    lambda A: hmat.Dense(A),
    lambda A: hmat.LowRank(A, np.eye(2)),
    lambda A: hmat.HBlock([[hmat.Dense(A)], [hmat.Dense(A)]]),
])
def test_operators_do_not_alias_the_callers_arrays(make):
    A = np.ones((2, 2))
    op = make(A)
    x = np.ones(2)
    before = op @ x
    A[0, 0] = np.nan  # would bypass validation if aliased
    A[1, 1] = 7.0
    np.testing.assert_array_equal(op @ x, before)
    np.testing.assert_array_equal(op.to_dense() @ x, before)
    assert np.isfinite(op.to_dense()).all()


def test_hand_built_hblock_matvec_is_not_stale():
    A = np.ones((2, 2))
    H = hmat.HBlock([[hmat.Dense(A), hmat.Dense(A)]])
    x = np.ones(4)
    first = H @ x  # caches the packed leaves
    A *= 2.0
    np.testing.assert_array_equal(H @ x, H.to_dense() @ x)
    np.testing.assert_array_equal(H @ x, first)


def _fields(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_load_npy_file_is_a_clear_value_error(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"a\.npy.*not an hmat file"):
        hmat.load(tmp_path / "a.npy")


def test_load_deep_chain_is_refused_and_save_refuses_too(tmp_path):
    depth = 5000
    nodes = np.array([(0, 1, 1, 1, 1, 0, 0)] * depth + [(1, 0, 0, 1, 1, -1, 0)], np.int64)
    f = {"magic": np.array("hmat-pinn/hblock"), "version": np.array(1, np.int64), "dtype": np.array("float64"),
         "shape": np.array([1, 1], np.int64), "nodes": nodes, "data": np.ones(1)}
    np.savez(tmp_path / "deep.npz", **f)
    with pytest.raises(ValueError, match="deep.npz.*nested deeper"):
        hmat.load(tmp_path / "deep.npz")
    H = hmat.Dense(np.ones((1, 1)))
    for _ in range(hmat.io.MAX_DEPTH + 1):
        H = hmat.HBlock([[H]])
    with pytest.raises(ValueError, match="nested deeper"):
        hmat.save(tmp_path / "d2.npz", H)
    assert not (tmp_path / "d2.npz").exists()


@pytest.mark.parametrize("field, value, match", [
    ("meta", np.array([0.1, 1e-3, np.inf]), "evaluation"),
    ("meta", np.array([-0.5, 1e-3, 0.0]), "error_estimate"),
    ("meta", np.array([-np.inf, 1e-3, 0.0]), "error_estimate"),
    ("meta", np.array([0.1, -1.0, 0.0]), "tol"),
    ("meta", np.array([0.1, 1e-3, 2.5]), "evaluation"),
    ("version", np.array("1"), "version"),
    ("version", np.array(1.9), "version"),
    ("version", np.array(1.0), "version"),
])
def test_load_refuses_bad_header_values(tmp_path, field, value, match):
    path = tmp_path / "h.npz"
    hmat.save(path, _small_h())
    f = _fields(path)
    f[field] = value
    np.savez(path, **f)
    with pytest.raises(ValueError, match=match):
        hmat.load(path)


def test_load_refuses_two_leaves_sharing_data(tmp_path):
    path = tmp_path / "h.npz"
    H = hmat.HBlock([[hmat.Dense(np.ones((2, 2))), hmat.Dense(2 * np.ones((2, 2)))]])
    hmat.save(path, H)
    f = _fields(path)
    f["nodes"][2, 6] = 0  # the second leaf reads the first leaf's range...
    f["data"] = f["data"][:4]  # ...and the total size still adds up without it
    f["data"] = np.concatenate([f["data"], f["data"]])
    np.savez(path, **f)
    with pytest.raises(ValueError, match="overlap"):
        hmat.load(path)


def test_save_keeps_permissions_and_follows_symlinks(tmp_path):
    real = tmp_path / "real.npz"
    hmat.save(real, _small_h())
    os.chmod(real, 0o640)
    hmat.save(real, hmat.Dense(np.ones((2, 2))))
    assert (os.stat(real).st_mode & 0o777) == 0o640
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    hmat.save(link, hmat.Dense(3 * np.ones((2, 2))))
    assert link.is_symlink()
    np.testing.assert_array_equal(hmat.load(real).to_dense(), 3 * np.ones((2, 2)))
    assert (os.stat(real).st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "real.npz"]


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        hmat.save(tmp_path / "n.npz", hmat.Dense(np.ones((2, 2))))
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "n.npz").st_mode & 0o777) == 0o640


def test_save_errors_name_the_path_given(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "missing" / "h.npz", tmp_path / "file" / "h.npz"):
        with pytest.raises(OSError) as info:
            hmat.save(bad, hmat.Dense(np.ones((2, 2))))
        assert info.value.filename == str(bad) and "hmat-tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        hmat.save(tmp_path, hmat.Dense(np.ones((2, 2))))
    assert info.value.filename == str(tmp_path)


def test_interrupted_save_leaves_no_temp_file(tmp_path, monkeypatch):
    hmat.save(tmp_path / "h.npz", _small_h())
    before = (tmp_path / "h.npz").read_bytes()

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupt)
    with pytest.raises(KeyboardInterrupt):
        hmat.save(tmp_path / "h.npz", hmat.Dense(np.ones((2, 2))))
    assert [p.name for p in tmp_path.iterdir()] == ["h.npz"]
    assert (tmp_path / "h.npz").read_bytes() == before


def test_temp_file_of_a_killed_save_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".h.npz.{pid}.abc123.hmat-tmp"
    stale.write_bytes(b"partial")
    other = tmp_path / f".h.npz.{os.getpid()}.live.hmat-tmp"  # a live writer's file stays
    other.write_bytes(b"in progress")
    hmat.save(tmp_path / "h.npz", hmat.Dense(np.ones((2, 2))))
    assert not stale.exists() and other.exists()


def test_unknown_compression_method_is_a_value_error(tmp_path):
    """A flipped byte in a zip directory entry's compression field (NotImplementedError in zipfile)."""
    hmat.save(tmp_path / "h.npz", _small_h())
    raw = bytearray((tmp_path / "h.npz").read_bytes())
    cd = raw.index(b"PK\x01\x02")  # first central-directory entry
    raw[cd + 10] = 99  # compression method 99: not supported
    (tmp_path / "h.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="h.npz"):
        hmat.load(tmp_path / "h.npz")


def test_manifest_catches_a_lost_optional_array(tmp_path):
    """A damaged zip directory can hide row_perm/meta: the file would load as another operator."""
    path = tmp_path / "h.npz"
    H = _small_h()
    hmat.save(path, H)
    f = _fields(path)
    del f["row_perm"]
    np.savez(path, **f)
    with pytest.raises(ValueError, match="manifest"):
        hmat.load(path)
    f["row_perm"], f["extra"] = H.row_perm, np.zeros(1)
    np.savez(path, **f)
    with pytest.raises(ValueError, match="unexpected arrays"):
        hmat.load(path)


def test_files_without_manifest_still_load(tmp_path):
    path = tmp_path / "h.npz"
    H = _small_h()
    hmat.save(path, H)
    f = _fields(path)
    del f["manifest"]
    np.savez(path, **f)
    assert hmat.load(path).to_dense().tobytes() == H.to_dense().tobytes()


@settings(max_examples=60, deadline=None)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=3))
def test_several_flipped_bits_give_value_error_or_identical_operator(tmp_path_factory, flips):
    d = tmp_path_factory.mktemp("flips")
    H = _small_h()
    hmat.save(d / "h.npz", H)
    raw = bytearray((d / "h.npz").read_bytes())
    for pos, bit in flips:
        raw[int(pos * len(raw))] ^= 1 << bit
    (d / "h.npz").write_bytes(bytes(raw))
    try:
        back = hmat.load(d / "h.npz")
    except ValueError as exc:
        assert "h.npz" in str(exc)
        return
    # the flips hit bytes no reader depends on (timestamps, attributes): nothing changed
    assert back.to_dense().tobytes() == H.to_dense().tobytes()
    assert np.array_equal(back.row_perm, H.row_perm)


def test_format_1_file_still_loads():
    """A file written by the format-1 code (before symmetric and mixed-precision storage,
    commit db4977d): it loads, and its product is the one that code computed."""
    import os

    here = os.path.join(os.path.dirname(__file__), "data")
    H = hmat.load(os.path.join(here, "format1_from_dense120.npz"))
    ref = np.load(os.path.join(here, "format1_from_dense120_Hx.npy"))
    x = np.random.default_rng(1).standard_normal(120)
    assert H.shape == (120, 120) and H.tol == 1e-6 and H.provenance.compressor is None
    np.testing.assert_allclose(H @ x, ref, rtol=1e-13, atol=1e-13 * np.linalg.norm(ref))


@pytest.mark.parametrize("make", [
    lambda pts: hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-5, leaf_size=32),
    lambda pts: hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-5, leaf_size=32, compressor=hmat.SVD()),
    lambda pts: hmat.from_dense(hmat.kernels.Laplace().block(pts, pts), tol=1e-5, points=pts, leaf_size=32,
                                precision="adaptive"),
    lambda pts: hmat.HBlock([[hmat.Dense(np.eye(pts.shape[0]))]]),
], ids=["from_kernel", "from_kernel_svd", "from_dense_adaptive", "by_hand"])
def test_round_trip_keeps_every_provenance_field(tmp_path, make):
    """tol, kernel evaluations, error estimate and the compressor's name come back."""
    import dataclasses

    H = make(np.random.default_rng(3).random((400, 3)))
    hmat.save(tmp_path / "h.npz", H)
    back = hmat.load(tmp_path / "h.npz")
    for field in dataclasses.fields(hmat.BuildInfo):
        assert getattr(back.provenance, field.name) == getattr(H.provenance, field.name), field.name
    assert back.provenance == H.provenance


def test_compressor_name_is_validated(tmp_path):
    H = hmat.from_kernel(hmat.kernels.Laplace(), np.random.default_rng(4).random((300, 3)), tol=1e-5, leaf_size=32)
    assert H.provenance.compressor is not None
    path = tmp_path / "h.npz"
    hmat.save(path, H)
    with np.load(path) as z:
        f = {k: z[k] for k in z.files}
    for change, match in [
        ({"compressor": np.array(["a", "b"])}, "compressor"),
        ({"compressor": np.array(3.0)}, "compressor"),
        ({"version": np.array(2, np.int64)}, "compressor"),
    ]:
        g = dict(f, **change)
        np.savez(tmp_path / "bad.npz", **g)
        with pytest.raises(ValueError, match=match):
            hmat.load(tmp_path / "bad.npz")
    g = {k: v for k, v in f.items() if k not in ("meta", "manifest")}
    np.savez(tmp_path / "bad.npz", **g)
    with pytest.raises(ValueError, match="compressor"):
        hmat.load(tmp_path / "bad.npz")


def _admissible_dense_operator():
    """A compiled build at a tight tolerance: many admissible leaves are stored dense
    (low rank did not pay), so the stored operators alone do not give the partition."""
    pts = np.random.default_rng(5).random((1000, 2))
    H = hmat.from_kernel(hmat.kernels.Laplace(2), pts, tol=1e-8, leaf_size=32, precision="full", symmetric=False)
    adm = H.partition.kind == hmat.LeafKind.LOWRANK
    dense_op = np.array([isinstance(lf.op, hmat.Dense) for lf in H.leaves()])
    assert (adm & dense_op).any() and (adm & ~dense_op).any()
    return H


def test_round_trip_keeps_admissible_leaves_stored_dense(tmp_path):
    H = _admissible_dense_operator()
    hmat.save(tmp_path / "h.npz", H)
    back = hmat.load(tmp_path / "h.npz")
    assert back.partition == H.partition
    assert_same(H, back)


def _saved_arrays(H, path):
    """Save ``H`` to ``path`` and return the file's arrays (name -> ndarray)."""
    hmat.save(path, H)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_low_rank_leaf_marked_inadmissible_is_refused(tmp_path):
    path = tmp_path / "h.npz"
    f = _saved_arrays(_admissible_dense_operator(), path)
    codes = f["nodes"][f["nodes"][:, 0] != 0, 0]  # the leaves' node codes, in leaf order
    q = int(np.flatnonzero(codes == 2)[0])  # a leaf stored low-rank
    _rewrite(path, leaf_kind=_bump(f["leaf_kind"], q, 1))
    with pytest.raises(ValueError, match="leaf_kind: a low-rank leaf marked dense"):
        hmat.load(path)


def test_format_3_file_takes_leaf_kinds_from_the_operators(tmp_path):
    """A version-3 file has no leaf_kind: each leaf's kind is its stored operator's."""
    H = _admissible_dense_operator()
    path = tmp_path / "h.npz"
    f = _saved_arrays(H, path)
    f.pop("leaf_kind")
    _rewrite(path, leaf_kind=None, version=np.array(3, np.int64), manifest=np.array(sorted(f)))
    back = hmat.load(path)
    from_ops = [hmat.LeafKind.LOWRANK if isinstance(lf.op, hmat.LowRank) else hmat.LeafKind.DENSE
                for lf in H.leaves()]
    assert back.partition.kind.tolist() == [int(k) for k in from_ops]
    assert back.to_dense().tobytes() == H.to_dense().tobytes()  # the same leaves, bitwise
    # the product may be summed in another order (the packing follows the leaf kinds)
    x = np.random.default_rng(0).random(H.shape[1])
    bound = 64 * np.finfo(np.float64).eps * np.linalg.norm(H.to_dense()) * np.linalg.norm(x)
    assert np.linalg.norm(back @ x - H @ x) <= bound
