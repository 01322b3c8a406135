"""The training engine gives the values saved from the code before its redesign (commit in
tests/golden/MANIFEST.json): every case of tests/golden/make_golden.py (``train.fit``,
``train.sweep``, every training experiment, extract_member) recomputed now and compared with its
.npz. Bit for bit where this machine is the one that wrote them (CPU model, avx512f, jax and
jaxlib versions, backend), except the experiments whose members now run as one sweep
(``RESTRUCTURED``, rtol 1e-4); on another machine to ``CROSS_MACHINE_RTOL`` and ``_ATOL``.
Learning rates, stored now as given, are compared to float32 rounding (``AS_GIVEN``).

Regenerate (only when a change of results is intended) with the make_golden.py command in its
docstring.
"""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def _generator():
    """tests/golden/make_golden.py, imported by path: the test runs its very cases."""
    spec = importlib.util.spec_from_file_location("jaxnets_make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_golden = _generator()
MANIFEST = json.loads((GOLDEN / "MANIFEST.json").read_text())
HERE = make_golden.fingerprint() | {"backend": jax.default_backend()}
EXACT = all(MANIFEST.get(k) == v for k, v in HERE.items())
# Run with pytest -m slow (20 s on a 2-core CPU, most of it compiling); CI leaves it out.
SLOW = {"exp_gan"}
# Experiments whose members now run as one train.sweep instead of a loop of their own: members
# that share a seed share its data (or noise) key across learning rates, so XLA forms other
# matrix products (one wide product for all rates) and float32 rounding differs (measured: 2e-7
# relative for adding, 3e-5 for the GAN ring's samples after 40 steps). Compared to rtol 1e-4.
RESTRUCTURED = {"exp_adding", "exp_gan"}
# Fields added on purpose since: each GAN metrics row names its learning rate; each lr_sweep
# row its step (metrics.jsonl holds learning curves; the case reads its final rows).
NEW_KEYS = {"exp_gan": "learning_rate", "exp_lr_sweep_extract_member": "metrics/step"}
# Learning rates are now stored as given, not as their float32 roundings (relative change
# below 6e-8); the computation still sees the float32 values, so nothing else moved.
AS_GIVEN = "learning_rate"
# Away from the machine that wrote them, chaotic members differ more. Between an AMD EPYC (AVX2)
# and an Intel Xeon (AVX-512), both jax 0.10.2: a diverging member's W1 at 1.3e33 by 1.8e-4
# relative; Adam at lr 0.1 after 60 steps by 1.4e-5 absolute on a weight near 2.5e-4.
CROSS_MACHINE_RTOL, CROSS_MACHINE_ATOL = 1e-3, 5e-5
# Cases holding members at learning rate 10 (diverging, or chance-level after chaotic steps):
# their values depend on the CPU's rounding (test accuracy 0.11 against 0.08 on the two
# machines above), so they are compared only on the machine that wrote them.
CHAOTIC = {"sweep_lr_seeds", "exp_lr_sweep_extract_member"}


def test_every_case_has_golden_values_and_no_more():
    assert sorted(p.stem for p in GOLDEN.glob("*.npz")) == sorted(make_golden.CASES)
    assert sorted(MANIFEST["cases"]) == sorted(make_golden.CASES)


@pytest.mark.parametrize("case", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW
                                  else name for name in make_golden.CASES])
def test_same_values_as_before_the_redesign(case, tmp_path):
    if case in CHAOTIC and not EXACT:
        pytest.skip(f"{case} holds chaotic members; compared only on the machine that wrote "
                    f"its golden values ({ {k: MANIFEST.get(k) for k in HERE} })")
    expected = make_golden.read_npz(GOLDEN / f"{case}.npz")
    actual = make_golden.CASES[case](tmp_path)
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    added = [k for k in extra if case in NEW_KEYS and NEW_KEYS[case] in k]
    assert not missing and extra == added, f"{case}: keys missing now {missing}, new {extra}"
    exact = EXACT and case not in RESTRUCTURED
    how = ("bit for bit (this machine's CPU, jax, jaxlib and backend wrote the golden values)"
           if exact else "to rtol 1e-4, atol 1e-6 only: its members now run as one sweep"
           if case in RESTRUCTURED else
           f"to rtol {CROSS_MACHINE_RTOL}, atol {CROSS_MACHINE_ATOL} only: this machine {HERE} "
           "is not the one "
           "that wrote the "
           f"golden values ({ {k: MANIFEST.get(k) for k in HERE} }), so not bit for bit")
    for key in added:  # the GAN's one learning rate; the lr_sweep's final step
        np.testing.assert_array_equal(np.asarray(actual[key]),
                                      1e-3 if case == "exp_gan" else 60)
    for key in sorted(expected):
        a, e = np.asarray(actual[key]), expected[key]
        msg = f"{case}: {key} differs from the golden value, compared {how}"
        assert a.shape == e.shape, f"{msg}: shape {a.shape}, golden {e.shape}"
        if AS_GIVEN in key:
            np.testing.assert_allclose(a, e, rtol=1e-7, err_msg=msg)
        elif exact or e.dtype.kind == "b":
            np.testing.assert_array_equal(a, e, err_msg=msg)  # NaNs must sit where they sat
        else:
            rtol, atol = (1e-4, 1e-6) if EXACT else (CROSS_MACHINE_RTOL, CROSS_MACHINE_ATOL)
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=msg)
