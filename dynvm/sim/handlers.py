"""The simulator's behaviours: one table from XAPI wire names to the functions
that serve them.

A message not in this table is served by the generic record, field and map
handlers the datamodel makes possible (`dispatch`), or answered as XAPI
answers a message it does not know. The table is the one list of what the
simulator models beyond the generated accessors, so reading it (or
`tools/sim_coverage.py`) tells what a client can rely on.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import (
    crosspool,
    deviceops,
    events,
    hostops,
    netops,
    poolops,
    storageops,
    vdiops,
    vmclone,
    vmpower,
    vmsettings,
    vmsnapshot,
    vmsuspend,
)
from .context import Handler

HANDLERS: Mapping[str, Handler] = {
    # sessions and tasks
    "session.login_with_password": hostops.session_login,
    "session.slave_local_login_with_password": hostops.session_slave_local_login,
    "session.logout": hostops.session_logout,
    "session.local_logout": hostops.session_logout,
    "session.get_all_subject_identifiers": hostops.session_subjects,
    "task.create": hostops.task_create,
    "task.cancel": hostops.task_cancel,
    "task.destroy": hostops.task_destroy,
    # events
    "event.from": events.event_from,
    "event.register": events.event_register,
    "event.unregister": events.event_unregister,
    "event.next": events.event_next,
    "event.get_current_id": events.event_get_current_id,
    "event.inject": events.event_inject,
    # hosts and the pool
    "host.disable": hostops.host_disable,
    "host.enable": hostops.host_enable,
    "host.get_servertime": hostops.host_servertime,
    "host.get_server_localtime": hostops.host_servertime,
    "host.compute_free_memory": hostops.host_compute_free_memory,
    "host.get_vms_which_prevent_evacuation": hostops.host_vms_preventing,
    "host.assert_can_evacuate": hostops.host_assert_can_evacuate,
    "host.evacuate": hostops.host_evacuate,
    "host.reboot": hostops.host_reboot,
    "host.shutdown": hostops.host_shutdown,
    "pool.designate_new_master": hostops.pool_designate_new_master,
    "pool.enable_ha": poolops.pool_enable_ha,
    "pool.disable_ha": poolops.pool_disable_ha,
    "pool.set_ha_host_failures_to_tolerate": poolops.pool_set_ntol,
    # VM life cycle
    "VM.clone": vmclone.vm_clone,
    "VM.copy": vmclone.vm_copy,
    "VM.provision": vmclone.vm_provision,
    "VM.start": vmpower.vm_start,
    "VM.start_on": vmpower.vm_start_on,
    "VM.clean_shutdown": vmpower.vm_clean_shutdown,
    "VM.hard_shutdown": vmpower.vm_hard_shutdown,
    "VM.clean_reboot": vmpower.vm_clean_reboot,
    "VM.hard_reboot": vmpower.vm_hard_reboot,
    "VM.pause": vmpower.vm_pause,
    "VM.unpause": vmpower.vm_unpause,
    "VM.destroy": vmpower.vm_destroy,
    "VM.pool_migrate": vmpower.vm_pool_migrate,
    "VM.assert_can_migrate": crosspool.vm_assert_can_migrate,
    "VM.migrate_send": crosspool.vm_migrate_send,
    "host.migrate_receive": crosspool.host_migrate_receive,
    "VM.suspend": vmsuspend.vm_suspend,
    "VM.resume": vmsuspend.vm_resume,
    "VM.resume_on": vmsuspend.vm_resume_on,
    "VM.snapshot": vmsnapshot.vm_snapshot,
    "VM.revert": vmsnapshot.vm_revert,
    # VM settings
    "VM.set_memory_limits": vmsettings.vm_set_memory_limits,
    "VM.set_memory": vmsettings.vm_set_memory,
    "VM.set_memory_static_range": vmsettings.vm_set_memory_static_range,
    "VM.set_memory_static_max": vmsettings.vm_set_memory_static_max,
    "VM.set_memory_dynamic_range": vmsettings.vm_set_memory_dynamic_range,
    "VM.set_VCPUs_max": vmsettings.vm_set_vcpus_max,
    "VM.set_VCPUs_at_startup": vmsettings.vm_set_vcpus_at_startup,
    "VM.set_is_a_template": vmsettings.vm_set_is_a_template,
    # disks
    "VDI.create": storageops.vdi_create,
    "VDI.destroy": storageops.vdi_destroy,
    "VDI.resize": vdiops.vdi_resize,
    "VBD.create": storageops.vbd_create,
    "VBD.destroy": storageops.vbd_destroy,
    "VBD.plug": deviceops.vbd_plug,
    "VBD.unplug": deviceops.vbd_unplug,
    "VBD.unplug_force": deviceops.vbd_unplug_force,
    "VBD.eject": deviceops.vbd_eject,
    "VBD.insert": deviceops.vbd_insert,
    "VM.get_allowed_VBD_devices": deviceops.vm_allowed_vbd_devices,
    # network devices
    "VIF.create": netops.vif_create,
    "VIF.destroy": netops.vif_destroy,
    "VIF.move": netops.vif_move,
    "VIF.plug": deviceops.vif_plug,
    "VIF.unplug": deviceops.vif_unplug,
    "VIF.unplug_force": deviceops.vif_unplug,
    "VM.get_allowed_VIF_devices": deviceops.vm_allowed_vif_devices,
}
