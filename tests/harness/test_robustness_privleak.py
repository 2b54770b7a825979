"""The robustness report's PrivLeak: each row's MIA AUC relative to the retain model's."""

from __future__ import annotations

import pytest

from harness.reports.robustness import robustness_csv, with_privleak
from tests.harness.test_robustness_job import record


def with_auc(method: str, auc: float | None):
    r = record(method, -10.0, -12.0)
    r.probes["membership"] = {"loss_auc": auc, "loss_auc_se": 0.05}
    r.columns.append(("membership", ["loss_auc", "loss_auc_se"]))
    return r


def test_privleak_is_relative_to_the_retain_row():
    rows = with_privleak([with_auc("npo", 0.9), with_auc("no_edit", 1.0),
                          with_auc("retain_model", 0.75)])
    leaks = {r.method: r.probes["membership"]["loss_privleak"] for r in rows}
    assert leaks["npo"] == pytest.approx((0.9 - 0.75) / 0.75)
    assert leaks["no_edit"] == pytest.approx(1.0 / 0.75 - 1.0)
    assert leaks["retain_model"] == pytest.approx(0.0)  # exact unlearning: no leak
    assert ("membership", ["loss_auc", "loss_auc_se", "loss_privleak"]) in rows[0].columns


def test_no_retain_row_no_privleak():
    rows = with_privleak([with_auc("npo", 0.9), with_auc("no_edit", 1.0)])
    assert rows[0].probes["membership"]["loss_privleak"] is None
    assert "membership.loss_privleak" in robustness_csv(rows, None, None).splitlines()[0]
