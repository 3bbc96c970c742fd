"""A VM's first-boot data on a NoCloud config drive, as Xen Orchestra gives it.

The drive is an ISO 9660 volume labelled `cidata` holding `meta-data`
(`instance-id`, `local-hostname`) and `user-data` (the `#cloud-config`),
under both Rock Ridge and Joliet names, so cloud-init and cloudbase-init
both find it. It is built in memory, uploaded into a new VDI on the VM's SR
and attached as a disk before the first start; the VM's teardown destroys it
with the VM's other disks. A failure at any step destroys the VDI.
"""

from __future__ import annotations

import io
import logging
import threading

import yaml

from dynvm.core.ports import FirstBoot, XenError
from dynvm.xen.pool_access import PoolAccess
from dynvm.xen.upload import RawImporter

log = logging.getLogger(__name__)

LABEL = "cidata"
TAG = "dynvm_config_drive"  # other_config of the VDI: the VM (uuid) it was made for
UPLOAD_TIMEOUT = 300.0
MIB = 1 << 20


def meta_data(instance_id: str, hostname: str) -> str:
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname},
                          sort_keys=False)


def nocloud_image(instance_id: str, boot: FirstBoot) -> bytes:
    """The ISO image of the drive, built in memory."""
    return seed_iso(meta_data(instance_id, boot.hostname), boot.user_data)


def seed_iso(meta: str, user: str, label: str = LABEL) -> bytes:
    """A NoCloud seed ISO (meta-data and user-data) as `genisoimage -J -r` lays it out."""
    import pycdlib  # here, not at start: ~5 MB in every worker, used only by builds

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    for name, text in (("meta-data", meta), ("user-data", user)):
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), f"/{name.replace('-', '').upper()}.;1",
                   rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


class ConfigDrives(PoolAccess):
    """Config drives of one pool's VMs."""

    def __init__(self, importer: RawImporter) -> None:
        super().__init__(importer.sessions, importer.inventory)
        self.importer = importer

    def attach(self, vm: str, vm_uuid: str, sr: str, boot: FirstBoot,
               cancel: threading.Event | None = None) -> str:
        """Make, fill and attach the drive of `vm` (halted) on `sr`; the VDI's ref."""
        image = nocloud_image(vm_uuid, boot)
        vdi = self.call("VDI.create", {
            "name_label": "config drive", "name_description": f"cloud-init data of VM {vm_uuid}",
            "SR": sr, "virtual_size": str(-(-len(image) // MIB) * MIB), "type": "user",
            "sharable": False, "read_only": False, "other_config": {TAG: vm_uuid},
            "xenstore_data": {}, "sm_config": {}, "tags": [],
        })
        try:
            self.importer.put(vdi, image, label=f"config drive of VM {vm_uuid}",
                              timeout=UPLOAD_TIMEOUT, cancel=cancel)
            self.call("VBD.create", {
                "VM": vm, "VDI": vdi, "userdevice": "autodetect", "bootable": False,
                "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
                "other_config": {TAG: vm_uuid}, "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            })
        except BaseException:
            self._destroy(vdi)
            raise
        return str(vdi)

    def _destroy(self, vdi: str) -> None:
        try:
            self.call("VDI.destroy", vdi)
        except XenError as exc:
            if exc.code != "HANDLE_INVALID":
                log.error("xenhost%d: config drive VDI %s left behind: %s",
                          self.host_ref, vdi, exc)
