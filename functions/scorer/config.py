"""Settings of the scoring Lambda, read once from the environment that template.yaml sets.

Every variable is required: a missing or malformed one fails at start with its name, so a
broken deployment shows up in the first invocation's log, not as odd results later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from scorer.errors import ConfigError

REQUIRED = (
    "PREDICTIONS_TABLE",
    "SCORING_QUEUE_URL",
    "ENDPOINT_NAME",
    "MODEL_VERSION",
    "MODEL_LEADS",
    "MODEL_SAMPLING_RATE_HZ",
    "WINDOW_SAMPLES",
    "MAX_FILE_BYTES",
    "MAX_RECORDING_BYTES",
    "MAX_PAYLOAD_BYTES",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
)


@dataclass(frozen=True)
class Settings:
    """What the handler needs to know about its table, its endpoint and its model."""

    predictions_table: str
    scoring_queue_url: str  # where chunk orders and second looks go (the queue it reads)
    endpoint_name: str
    model_version: str
    model_leads: tuple[str, ...]
    model_sampling_rate_hz: float
    window_samples: int
    max_file_bytes: int  # uploads read whole (JSON, CSV, NPY, NPZ, ZIP)
    max_recording_bytes: int  # recordings read by range (EDF/BDF, WFDB parts), in chunks
    max_payload_bytes: int
    # What reading and preparing one file may use: half the function's memory, less what the
    # interpreter, NumPy, boto3 and Powertools hold (docs/memory.md).
    memory_budget_bytes: int = 384 * 2**20

    @property
    def window_bytes(self) -> int:
        """Bytes of one float32 window in the request body."""
        return self.window_samples * len(self.model_leads) * 4


def _positive_int(env: Mapping[str, str], name: str) -> int:
    raw = env[name].strip()
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} is not an integer") from e
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; ``env`` defaults to ``os.environ``."""
    env = os.environ if env is None else env
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")

    leads = tuple(lead.strip() for lead in env["MODEL_LEADS"].split(",") if lead.strip())
    if not leads or len({lead.casefold() for lead in leads}) != len(leads):
        raise ConfigError(f"MODEL_LEADS={env['MODEL_LEADS']!r} must list distinct lead names")
    try:
        rate = float(env["MODEL_SAMPLING_RATE_HZ"])
    except ValueError as e:
        raise ConfigError(f"MODEL_SAMPLING_RATE_HZ={env['MODEL_SAMPLING_RATE_HZ']!r}") from e
    if not rate > 0:
        raise ConfigError("MODEL_SAMPLING_RATE_HZ must be positive")

    memory_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024") or 1024)  # set by Lambda
    settings = Settings(
        predictions_table=env["PREDICTIONS_TABLE"].strip(),
        scoring_queue_url=env["SCORING_QUEUE_URL"].strip(),
        endpoint_name=env["ENDPOINT_NAME"].strip(),
        model_version=env["MODEL_VERSION"].strip(),
        model_leads=leads,
        model_sampling_rate_hz=rate,
        window_samples=_positive_int(env, "WINDOW_SAMPLES"),
        max_file_bytes=_positive_int(env, "MAX_FILE_BYTES"),
        max_recording_bytes=_positive_int(env, "MAX_RECORDING_BYTES"),
        max_payload_bytes=_positive_int(env, "MAX_PAYLOAD_BYTES"),
        memory_budget_bytes=max(64, memory_mb // 2 - 128) * 2**20,
    )
    # One window must fit in a request, with room for the .npy header.
    if settings.max_payload_bytes < settings.window_bytes + 256:
        raise ConfigError(
            f"MAX_PAYLOAD_BYTES={settings.max_payload_bytes} is smaller than one window "
            f"({settings.window_bytes} bytes plus the .npy header)"
        )
    return settings
