"""Operating the gateway: logs, metrics and tracing."""
