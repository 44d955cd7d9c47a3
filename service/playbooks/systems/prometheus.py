"""Prometheus as playbooks see it: a query API, and instant queries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from service.playbooks.step_base import Params, StepBase
from service.playbooks.system import ConnectionModel, HttpAuth, System


class PrometheusQueryParams(Params):
    """An instant PromQL query; templated values are escaped for PromQL string literals."""

    escapes = {"query": "promql"}

    query: str = Field(min_length=1)


class PrometheusQuery(StepBase):
    """An instant PromQL query."""

    returns = "`samples[{metric, value}]`, `empty`, `result_type`"
    dry_run_behaviour = "runs"
    connection_type = "prometheus"
    action: Literal["prometheus.query"]
    with_: PrometheusQueryParams = Field(alias="with")


class PrometheusConnection(ConnectionModel):
    """A Prometheus-compatible query API."""

    type: Literal["prometheus"]
    url: str = Field(pattern=r"^https?://")
    auth: HttpAuth | None = None


PROMETHEUS = System(PrometheusConnection, (PrometheusQuery,))
