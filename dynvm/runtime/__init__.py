"""The running service: composition of every layer, gunicorn supervision and log format."""
