"""The embedded default's first start: migrate, admin secret, register and profile this machine once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from server.db.models import Device, Job, Profile
from server.db.session import Database
from tests.server.conftest import make_checkpoint


def test_prepare_profiles_the_local_machine_once(tmp_path: Path) -> None:
    from server.bootstrap import prepare
    from server.settings import Settings

    ckpt = make_checkpoint(tmp_path)
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
