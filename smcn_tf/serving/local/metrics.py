"""Prometheus metrics of `smcn serve`, named as TensorFlow Serving names them.

TF Serving records `/tensorflow/serving/request_count` (labels `model_name`,
`status`) and `/tensorflow/serving/request_latency` (microseconds; labels
`model_name`, `API`, `entrypoint`), and its Prometheus exporter turns every
character outside `[a-zA-Z0-9_]` into `:`, so a scraper sees
`:tensorflow:serving:request_count` and `:tensorflow:serving:request_latency`.
Prometheus metric names may start with `:` (`[a-zA-Z_:][a-zA-Z0-9_:]*`), so
the same names are used here, exposed by the `prometheus-client` library:

- `:tensorflow:serving:request_count_total` (counter): requests by
  `model_name`, `version`, `signature_name`, `API`, `entrypoint` and
  `status` (the canonical code name, `OK`, `INVALID_ARGUMENT`, ...). The
  library's counters end in `_total` (TF Serving's own exporter leaves the
  suffix out); the labels TF Serving has mean the same here, the others are
  added (a query that sums over them reads TF Serving's series).
- `:tensorflow:serving:request_latency` (histogram, microseconds, TF
  Serving's buckets 10 × 1.8^i): by `model_name`, `API`, `entrypoint`.

Label values a client chooses are bounded: a model name this server does not
serve, a version that is not loaded and an unknown signature are recorded as
`""`, so requests cannot grow the number of series.

Each `ServingMetrics` has its own `CollectorRegistry` (not the library's
global one), so several servers in one process (tests) never share counts.

Example:

>>> metrics = ServingMetrics()
>>> metrics.record("smcn", 1, "serving_default", "Predict", "GRPC", "OK", 0.012)
>>> b'status="OK"' in metrics.exposition()
True
"""

import prometheus_client

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# TF Serving's request_latency buckets: scale 10 µs, growth 1.8, 33 buckets (~20 minutes).
# Rounded to 1 ns so the `le` labels read as TF Serving's (no 32.400000000000006).
LATENCY_BUCKETS_MICROSECONDS = tuple(round(10.0 * 1.8**index, 3) for index in range(33))
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
METRICS_PATH = "/monitoring/prometheus/metrics"


class ServingMetrics:
    """Request counts and latencies of one server, in their own registry.

    Attributes:
        registry: the `prometheus_client.CollectorRegistry` holding them.
    """

    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self._count = prometheus_client.Counter(
            REQUEST_COUNT,
            "The total number of requests.",
            ["model_name", "version", "signature_name", "API", "entrypoint", "status"],
            registry=self.registry,
        )
        self._latency = prometheus_client.Histogram(
            REQUEST_LATENCY,
            "Distribution of wall time (in microseconds) for TensorFlow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_MICROSECONDS,
            registry=self.registry,
        )

    def record(self, model_name, version, signature_name, api, entrypoint, status, seconds):
        """Counts one answered request and its latency.

        Args:
            model_name: the served model's name (`""` for another name).
            version: the version that answered, or `None` / `""`.
            signature_name: the resolved signature key, or `""`.
            api: `"Predict"`, `"GetModelMetadata"` or `"GetModelStatus"`.
            entrypoint: `"GRPC"` or `"REST"`.
            status: the canonical status code name (`"OK"`, ...).
            seconds: the request's wall time.
        """
        version = "" if version is None else str(version)
        self._count.labels(
            model_name, version, signature_name or "", api, entrypoint, status
        ).inc()
        self._latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def exposition(self):
        """The metrics in Prometheus' text format, as bytes (`CONTENT_TYPE`)."""
        return prometheus_client.generate_latest(self.registry)
