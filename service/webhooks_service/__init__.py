"""webhooks-service: the webhook delivery service (API, workers, gateway)."""

__version__ = "0.1.0"
