"""Exports of a recorded trace: Parquet tables and OpenMetrics text for Prometheus."""
