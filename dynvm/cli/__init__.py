"""The `dynvm` command: serving, the simulator, configuration checks, operator and client commands."""

from dynvm.cli.main import main

__all__ = ["main"]
