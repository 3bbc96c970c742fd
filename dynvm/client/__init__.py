"""A small HTTP client of dynvm's v1 API, used by the `dynvm` client commands."""

from dynvm.client.http import Client, ClientError, settings

__all__ = ["Client", "ClientError", "settings"]
