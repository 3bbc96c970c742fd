"""Long-lived VMs as code: the fleet directory planned, applied and kept converged.

`farm` (the farm as the planner reads it), `room` (room and anti-affinity
while planning) and `plan` (what would make the farm match the files) are
pure; the modules that read the farm and act on it build on them.
"""
