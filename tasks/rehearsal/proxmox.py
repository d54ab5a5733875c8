"""Rehearsal stage for Proxmox (L0 runway, L2 VMs) against fakepve, and the fakepve runner the
test suite shares.

fakepve (a test-only dependency) is served in this process, on its own event loop in a daemon
thread, over HTTPS on a loopback address with a certificate made for it; the acts (`inv ...`
subprocesses) verify that certificate through PVE_CA_BUNDLE.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.rehearsal.play import Act, Rehearsal

START_TIMEOUT = 30
# The template the bundled sample VMs clone until L1 has written a stable manifest.
SAMPLE_TEMPLATE_VMID, SAMPLE_TEMPLATE_NAME = 9000, "debian12-k3s"


# fakepve's root login, for Packer 1.6 (no token login). Distinct on purpose: fakepve's default
# password is the word "secret", and masking it would blank that word out of every line.
ROOT_PASSWORD = "rehearsal-root-pw-4d1e"


def _fakepve_class():
    """FakePve with the one piece of state fakepve 0.5 leaves out: qemu disk resize.

    fakepve answers `PUT /nodes/{node}/qemu/{vmid}/resize` from the schema alone (a task that changes
    nothing), so a resized disk would look unresized forever. This adds the state change: the disk's
    `size=` grows, shrinking is refused with PVE's message, a locked VM is refused.
    """
    from fakepve import FakePve, TaskError
    from fakepve.lxc import SIZE_UNITS, format_size
    from fakepve.qemu import join_drive, split_drive
    from fakepve.routing import die

    def to_bytes(text: str) -> int:
        found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text)
        if not found:
            raise die(f"unable to parse size '{text}'")
        return int(float(found.group(1)) * SIZE_UNITS.get(found.group(2) or "G", 1))

    class HomelabFakePve(FakePve):
        def _routes_qemu_resize(self):
            return [("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._qm_resize)]

        async def _qm_resize(self, v, user):
            vm = self.find(v["node"], v["vmid"])
            self._check_lock(vm)
            disk = v["disk"]
            if disk not in vm.config:
                raise die(f"disk '{disk}' does not exist")
            volume, props = split_drive(vm.config[disk])
            current = to_bytes(props.get("size", "0"))
            wanted = str(v["size"])
            new = current + to_bytes(wanted[1:]) if wanted.startswith("+") else to_bytes(wanted)

            async def body():
                if new < current:
                    raise TaskError("shrinking disks is not supported")
                vm.config[disk] = join_drive(volume, dict(props, size=format_size(new)))

            return await self.task(vm.node, "resize", vm.vmid, user, body, vm=vm)

    return HomelabFakePve


@dataclass
class ServedPve:
    """A running fakepve: the object to script it, and how a client reaches it."""

    pve: Any
    host: str
    cafile: str
    token_id: str
    token_secret: str
    loop: asyncio.AbstractEventLoop
    node: str = "pve1"
    storage: str = "local-lvm"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.pve.port}"

    @property
    def access_host(self) -> str:
        return f"{self.host}:{self.pve.port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The variables a runner needs to reach this fake, its CA verified."""
        env = {
            "PVE_ACCESS_HOST": self.access_host,
            "PM_TOKEN_ID": self.token_id,
            "PM_TOKEN_SECRET": self.token_secret,
            "PVE_NODE": self.node,
            "PVE_STORAGE_VM": self.storage,
            "PVE_STORAGE_ISO": "local",
            "PVE_CA_BUNDLE": self.cafile,
            **self.extra_env,
        }
        env.update(overrides)
        return env

    def call(self, coro) -> Any:
        """Run a fakepve coroutine (hold_config_lock, backup...) on its loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    def add_template(self, vmid: int, name: str, node: str | None = None, disk_gb: int = 8):
        """A cloud-init ready template VM, as L1 would leave it."""
        return self.pve.add_vm(
            vmid,
            name,
            node=node or self.node,
            template=True,
            config={
                "cores": 1,
                "memory": 1024,
                "scsi0": f"{self.storage}:base-{vmid}-disk-0,size={disk_gb}G",
                "ide2": f"{self.storage}:vm-{vmid}-cloudinit,media=cdrom",
                "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
                "scsihw": "virtio-scsi-pci",
                "agent": "1",
                "template": 1,
            },
        )


async def _cancel_running_tasks() -> None:
    """Tasks still running (a slow start a test gave up on) end with the fake, quietly."""
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@contextmanager
def serve_fakepve(
    workdir: Path,
    *,
    time_scale: float = 0.0,
    token_id: str = "homelab@pve!runner",
    host: str | None = None,
) -> Iterator[ServedPve]:
    """Start fakepve on a free port of a random 127.0.0.N with its own certificate; stop it after."""
    from fakepve.certs import make_cert

    host = host or f"127.0.0.{random.randint(2, 254)}"
    workdir.mkdir(parents=True, exist_ok=True)
    certfile, keyfile, _ = make_cert(str(workdir), name=f"fakepve-{host}", hosts=(host,))
    pve = _fakepve_class()(password=ROOT_PASSWORD, host=host, port=0)
    pve.time_scale = time_scale
    secret = secrets.token_hex(16)
    pve.apitokens[token_id] = secret
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"fakepve-{host}", daemon=True)
    thread.start()

    def call(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(START_TIMEOUT)

    try:
        call(pve.start(certfile, keyfile))
        yield ServedPve(pve, host, certfile, token_id, secret, loop)
    finally:
        try:
            call(_cancel_running_tasks())
            call(pve.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(START_TIMEOUT)
            if not thread.is_alive():
                loop.close()


@contextmanager
def stage(rehearsal: Rehearsal) -> Iterator[list[Act]]:
    """fakepve with the sample template; runway, plan, apply, plan again, then `up --dry-run`."""
    try:
        import fakepve  # noqa: F401
    except ModuleNotFoundError:
        from tasks.runtime.console import warn

        warn("rehearsal: fakepve is not installed (pip install -e '.[dev]'); skipping Proxmox")
        yield []
        return
    with serve_fakepve(rehearsal.scratch / "fakepve", time_scale=0.002) as served:
        served.add_template(SAMPLE_TEMPLATE_VMID, SAMPLE_TEMPLATE_NAME)
        rehearsal.env.update(served.env())
        rehearsal.stood_up.append(
            f"fakepve, a Proxmox VE API fake, at https://{rehearsal.env['PVE_ACCESS_HOST']} (its own "
            f"CA, verified), serving template {SAMPLE_TEMPLATE_NAME} (vmid {SAMPLE_TEMPLATE_VMID})"
        )
        yield [
            Act("L0 runway: env, API, token privileges, node, storage, tools", ("l0.runway",)),
            Act("L2 plan: the sample VMs, nothing there yet", ("l2.plan",)),
            Act("L2 apply: clone, configure, resize, start", ("l2.apply",)),
            Act("L2 plan again: already as wanted", ("l2.plan",)),
            Act("plan the layer pipeline with Proxmox registered", ("up", "--dry-run")),
        ]
