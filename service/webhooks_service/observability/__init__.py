"""Operating the service: Prometheus metrics, structured logs, gRPC health."""
