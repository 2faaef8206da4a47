"""The embedded default's first start: migrate, admin secret, register and profile this machine once."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from server.db.models import Device, Job, Profile
from server.db.session import Database
from tests.factories import tiny_checkpoint


def test_prepare_profiles_the_local_machine_once(tmp_path: Path) -> None:
    from server.bootstrap import prepare
    from server.settings import Settings

    ckpt = tiny_checkpoint(tmp_path)
    s = Settings(var_dir=tmp_path / "var", checkpoint=ckpt, bootstrap_device="this-box", bootstrap_workload="b1-p8-g4", bootstrap_max_shapes=6,
                 bootstrap_repetitions=1)
    seen: list[tuple[int, int, str]] = []
    first = prepare(s, migrate=True, bootstrap=True, on_shape=lambda d, t, k: seen.append((d, t, k)))
    assert first.admin_token and first.device == "this-box" and first.device_token and first.profiled_shapes == 6
    assert [d for d, _, _ in seen] == [1, 2, 3, 4, 5, 6] and all(t == 6 for _, t, _ in seen)
    db = Database(s.db_url())
    with db.sessions() as sess:
        dev = sess.scalar(select(Device).where(Device.name == "this-box"))
        assert dev is not None and dev.hardware["local"] is True and dev.hardware["cpu_count"] >= 1
        prof = sess.scalar(select(Profile))
        assert prof is not None and prof.num_rows == 6 and prof.engine.name == "torch" and prof.workload.key == "b1-p8-g4"
        assert sess.scalar(select(Job.kind)) == "refit"
    db.dispose()
    again = prepare(s, migrate=True, bootstrap=True)
    assert again.admin_token is None and again.device_token is None and again.profiled_shapes == 0


def test_first_start_profile_is_adaptive_within_the_budget_and_fits(tmp_path: Path) -> None:
    from profilers.table import parse_table
    from server.bootstrap import prepare
    from server.db.models import PredictorFit
    from server.services.latency import refit
    from server.settings import Settings

    ckpt = tiny_checkpoint(tmp_path)  # its space: depth 2..4 x attention (1, 0.5) x MLP (1, 0.5) = 12 shapes (the old grid)
    s = Settings(var_dir=tmp_path / "var", checkpoint=ckpt, bootstrap_device="this-box", bootstrap_workload="b1-p8-g4", bootstrap_repetitions=1,
                 bootstrap_budget_s=0.01)  # spent by the initial design: no second batch
    seen: list[tuple[int, int, str]] = []
    got = prepare(s, migrate=True, bootstrap=True, on_shape=lambda d, t, k: seen.append((d, t, k)))
    assert got.profiled_shapes == 10 and [d for d, _, _ in seen] == list(range(1, 11)) and all(t == 12 for _, t, _ in seen)
    db = Database(s.db_url())
    with db.sessions() as sess:
        prof = sess.scalar(select(Profile))
        assert prof is not None and prof.num_rows == 10 < 12
        table = parse_table(prof.document)
        assert table.protocol is not None and re.match(r"adaptive: 1 batches \((budget spent|target met)\)", table.protocol.order), table.protocol
        assert table.protocol.passes == 2 and table.noise_floor is not None and "adaptive" in table.command
        assert {r.shape for r in table.rows} == {k for _, _, k in seen}
        prof_id = prof.id
    fit = refit(db, prof_id)
    with db.sessions() as sess:
        stored = sess.get(PredictorFit, fit.id)
        assert stored is not None and stored.profile_id == prof_id and stored.mape is not None and stored.state["table_sha256"] == table.content_sha256()
    db.dispose()


def test_budget_and_max_shapes_are_typed_settings(monkeypatch) -> None:
    import pytest
    from pydantic import ValidationError

    from server.settings import Settings

    assert Settings().bootstrap_budget_s == 60.0 and Settings().bootstrap_max_shapes is None
    monkeypatch.setenv("AMOEBA_BOOTSTRAP_BUDGET_S", "90")
    monkeypatch.setenv("AMOEBA_BOOTSTRAP_MAX_SHAPES", "16")
    assert Settings().bootstrap_budget_s == 90.0 and Settings().bootstrap_max_shapes == 16
    for env, bad in (("AMOEBA_BOOTSTRAP_BUDGET_S", "0"), ("AMOEBA_BOOTSTRAP_MAX_SHAPES", "5")):
        monkeypatch.setenv(env, bad)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(env)
