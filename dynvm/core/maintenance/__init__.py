"""Host maintenance: drain in the store, the rolling-reboot planner and its runner.

Pure core code: the hypervisor side is reached through `MaintenancePort`
(implemented in `dynvm.xen.maintenance`), the state of record lives in the store.
"""
