"""Fixtures of the ecg-scorer tests (loaded with ``pytest_plugins``): moto, and
PredictionsTable built from template.yaml the way the local stack builds it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cli_helpers import CLI_ENV, TABLE
from moto import mock_aws

from ecg_scorer.local import sam_template


@pytest.fixture
def cli_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def ddb(cli_aws: None) -> Any:
    """PredictionsTable created the way the local stack creates it (from template.yaml)."""
    client = boto3.client("dynamodb")
    client.create_table(**sam_template.table_definition(sam_template.load_template(), TABLE))
    return client
