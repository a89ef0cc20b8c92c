"""What people and scripts see: the status table, Prometheus metrics, log handlers."""
