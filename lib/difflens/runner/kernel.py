"""The kernel the runner executes notebooks in: its own Python, on an encrypted or local channel.

Notebooks run in ``sys.executable -m ipykernel_launcher``, the interpreter the runner itself
runs in, whatever kernel specs (a stale user-level ``python3``, another environment's) lie on
the Jupyter path. The channel between runner and kernel is CurveZMQ-encrypted TCP where
jupyter_client and the kernel support it, else IPC sockets where the platform has them, so
ipykernel has no reason to warn that it runs over TCP without encryption.
"""

from __future__ import annotations

import os
import sys
import uuid

import zmq
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir

KERNEL_ARGV: tuple[str, ...] = ("-m", "ipykernel_launcher", "-f", "{connection_file}")


def own_kernel_spec() -> KernelSpec:
    """The kernel spec of the running interpreter: ``sys.executable -m ipykernel_launcher``.

    Its metadata (debugger, supported encryption) is ipykernel's own for this interpreter.

    Returns:
        The kernel spec, not written anywhere.
    """
    from ipykernel.kernelspec import get_kernel_dict

    spec = get_kernel_dict()
    spec["argv"] = [sys.executable, *KERNEL_ARGV]
    known = set(KernelSpec.class_trait_names())
    return KernelSpec(**{key: value for key, value in spec.items() if key in known})


def channel_settings() -> dict[str, str]:
    """Kernel-manager settings for a channel ipykernel does not warn about.

    Returns:
        ``{"transport_encryption": "auto"}`` where the kernel manager can provision CurveZMQ
        keys and libzmq has CurveZMQ; else ``{"transport": "ipc"}`` where libzmq has IPC;
        else ``{}`` (plain TCP).
    """
    if zmq.has("curve") and "transport_encryption" in AsyncKernelManager.class_trait_names():
        return {"transport_encryption": "auto"}
    if zmq.has("ipc"):
        return {"transport": "ipc"}
    return {}


class OwnKernelManager(AsyncKernelManager):
    """A kernel manager that starts :func:`own_kernel_spec`, whatever kernel name it is given.

    The kernel name (``python3``) is kept only as the executed notebook's metadata. The
    channel follows :func:`channel_settings`; IPC sockets lie in the Jupyter runtime folder
    (not in the folder the kernel runs in).

    Args:
        **kwargs: passed to :class:`jupyter_client.manager.AsyncKernelManager`.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**{**channel_settings(), **kwargs})
        if self.transport == "ipc" and "ip" not in kwargs:
            runtime = jupyter_runtime_dir()
            os.makedirs(runtime, mode=0o700, exist_ok=True)
            self.ip = os.path.join(runtime, f"difflens-{uuid.uuid4().hex[:12]}-ipc")

    @property
    def kernel_spec(self) -> KernelSpec:
        """The runner's own kernel spec (:func:`own_kernel_spec`)."""
        if self._kernel_spec is None:
            self._kernel_spec = own_kernel_spec()
        return self._kernel_spec
