"""Prometheus text exposition for the controller's `GET /metrics` and the node's `--metrics-listen`.

Both build their metric families from live state at each scrape (on the
reactor thread that owns it) and render them here with prometheus_client,
together with the process's own (resident memory, CPU seconds, open files).
The node imports this module only when --metrics-listen is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from l2mesh.edge.loop_lateness import LatenessHistogram

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "lateness_family"]

# process_resident_memory_bytes and friends, read from /proc at each scrape; registered nowhere global.
_PROCESS = ProcessCollector(registry=None)


class _Scrape:
    """One scrape's collectors as one (what generate_latest takes): families already built, then live ones."""

    def __init__(self, families: Iterable[Metric], collectors: Iterable[Collector]) -> None:
        self.families = families
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        yield from self.families
        for collector in self.collectors:
            yield from collector.collect()


def exposition(families: Iterable[Metric], *collectors: Collector) -> bytes:
    """The text format (CONTENT_TYPE_LATEST) of families built at scrape time, the collectors' and the process's."""
    return generate_latest(_Scrape(families, (*collectors, _PROCESS)))


def lateness_family(name: str, documentation: str, histogram: LatenessHistogram) -> HistogramMetricFamily:
    """A reactor's tick lateness as a Prometheus histogram (cumulative buckets, +Inf last)."""
    buckets = [(floatToGoString(bound), float(count)) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.sum_s)
