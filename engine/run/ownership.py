"""Who owns a run: the name a process takes as an owner, and whether an owner is gone.

A process owns the runs it drives through a lease in the store, renewed by its engine's
heartbeat; a run whose lease lapsed is claimed by another process's sweep. A process of this
host that has exited is known to be gone at once (its runs are claimed without waiting for
the lease).
"""

from __future__ import annotations

import os
import socket
import uuid


def new_owner() -> str:
    """host:pid:nonce: unique per engine, and telling a process of the same host who it was."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """Whether `owner` (host:pid:nonce) was a process of this host that has exited."""
    if not owner or owner.count(":") < 2:
        return owner is None
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
