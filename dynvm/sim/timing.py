"""Simulated durations, all divided by one speed factor so tests run in seconds."""

from __future__ import annotations

from dataclasses import dataclass, field


def _per_os(linux: float, windows: float) -> dict[str, float]:
    return {"linux": linux, "windows": windows}


@dataclass
class Timing:
    """Real-world seconds; every delay the simulator applies is divided by `speed`."""

    speed: float = 1.0
    call_latency: float = 0.0
    clone_secs: dict = field(default_factory=lambda: _per_os(5.0, 10.0))
    boot_secs: dict = field(default_factory=lambda: _per_os(30.0, 60.0))
    ip_secs: dict = field(default_factory=lambda: _per_os(2.0, 5.0))
    login_failure_delay: float = 5.0
    session_idle_timeout: float = 86400.0
    host_reboot_secs: float = 120.0
    # Live migration: a fixed part plus a part per GiB of the VM's memory
    # (about 1 Gbit/s of effective copy rate, as on a busy 10 GbE management link).
    migrate_base_secs: float = 2.0
    migrate_secs_per_gib: float = 8.0

    def migrate_secs(self, memory_bytes: int) -> float:
        """Scaled wall seconds one live migration of `memory_bytes` takes."""
        return self.scaled(self.migrate_base_secs + self.migrate_secs_per_gib * memory_bytes / (1 << 30))

    def scaled(self, seconds: float) -> float:
        """Seconds of wall time for `seconds` of simulated time."""
        return max(0.0, seconds) / (self.speed if self.speed > 0 else 1.0)

    def for_os(self, table: dict, windows: bool) -> float:
        """Scaled delay from a per-OS-class table (`linux` / `windows`)."""
        return self.scaled(float(table.get("windows" if windows else "linux", 0.0)))
