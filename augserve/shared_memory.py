"""Same-host transport: tensors in POSIX shared memory instead of gRPC bytes.

A client on the server's host writes its batch into a region it created and sends only a
reference (name, offset, size); the server maps the region, reads the batch without a copy and
writes the result into the client's output region. gRPC then carries a few hundred bytes per
batch instead of two copies of the tensors. Region names carry a random token, so they are
unguessable, and the operating system's permissions on ``/dev/shm`` apply as usual.
"""

from __future__ import annotations

import collections
import mmap
import os
import re
import secrets
import threading
from multiprocessing import shared_memory

from augserve.v1 import augserve_pb2 as pb

NAME = re.compile(r"^augserve_[A-Za-z0-9_]{1,80}$")
OPEN_REGIONS = 32  # regions a server keeps mapped (least recently used are dropped first)
SHM_ROOT = "/dev/shm"  # where POSIX shared memory lives on Linux


class SharedMemoryError(ValueError):
    """A shared-memory reference that cannot be used; the message names the field."""


class RegionCache:
    """The server side: regions mapped by name on first use and kept mapped, least recently used dropped first.

    Regions are mapped with ``mmap`` directly (not ``SharedMemory``): a dropped mapping stays valid
    until the last batch reading from it lets go, and the client, which created the region, alone
    decides when it is unlinked.
    """

    def __init__(self, capacity: int = OPEN_REGIONS, root: str = SHM_ROOT):
        self.capacity = capacity
        self.root = root
        self._open: collections.OrderedDict[str, mmap.mmap] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _region(self, name: str, field: str) -> mmap.mmap:
        if not NAME.match(name):
            raise SharedMemoryError(f"{field}.name: expected 'augserve_' then letters, digits or '_', got {name!r}")
        with self._lock:
            region = self._open.pop(name, None)
            if region is None:
                region = self._map(name, field)
            self._open[name] = region
            while len(self._open) > self.capacity:
                self._open.popitem(last=False)
            return region

    def _map(self, name: str, field: str) -> mmap.mmap:
        try:  # never through a symlink: another local user could point one at a file the server may write
            descriptor = os.open(os.path.join(self.root, name), os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise SharedMemoryError(f"{field}.name: no shared-memory region {name!r} on the server's host "
                                    "(shared memory works only when client and server share a host)") from None
        except PermissionError:
            raise SharedMemoryError(f"{field}.name: the server may not open region {name!r} "
                                    "(it belongs to another user)") from None
        except OSError:  # ELOOP: a symlink
            raise SharedMemoryError(f"{field}.name: {name!r} is not a shared-memory region") from None
        try:
            return mmap.mmap(descriptor, os.fstat(descriptor).st_size)
        finally:
            os.close(descriptor)

    def view(self, ref: pb.SharedMemoryRef, nbytes: int, field: str) -> memoryview:
        """``nbytes`` of the region at ``ref.offset``, after checking they lie within ``ref.size`` and the region."""
        region = self._region(ref.name, field)
        if nbytes > ref.size or ref.offset + ref.size > len(region):
            raise SharedMemoryError(f"{field}: expected {nbytes} bytes within size {ref.size} at offset {ref.offset} "
                                    f"of region {ref.name!r} ({len(region)} bytes)")
        return memoryview(region)[ref.offset:ref.offset + nbytes]

    def close(self) -> None:
        with self._lock:
            self._open.clear()


class Slot:
    """The client side: one input and one output region, grown when a batch needs more room."""

    def __init__(self):
        self.regions: dict[str, shared_memory.SharedMemory] = {}
        self.output_bytes = 0  # the largest answer seen, so the output region is made big enough

    def view(self, ref: pb.SharedMemoryRef, nbytes: int, field: str) -> memoryview:
        """Resolve a reference to this slot's own output region (what the server wrote), and nothing else."""
        region = self.regions.get("out")
        if region is None or ref.name != region.name or ref.offset + nbytes > region.size:
            raise SharedMemoryError(f"{field}: expected {nbytes} bytes in this request's output region")
        return region.buf[ref.offset:ref.offset + nbytes]

    def region(self, kind: str, nbytes: int) -> shared_memory.SharedMemory:
        region = self.regions.get(kind)
        if region is None or region.size < nbytes:
            if region is not None:
                region.close()
                region.unlink()
            region = shared_memory.SharedMemory(create=True, size=max(nbytes, 1),
                                                name=f"augserve_{secrets.token_hex(12)}")
            try:  # reserve the pages now: a full /dev/shm must fail here, not with SIGBUS on first write
                os.posix_fallocate(region._fd, 0, region.size)  # noqa: SLF001 - the only handle to the descriptor
            except OSError as error:
                region.close()
                region.unlink()
                self.regions.pop(kind, None)
                raise SharedMemoryError(f"cannot reserve {nbytes} bytes of shared memory: {error}") from None
            self.regions[kind] = region
        return region

    def close(self) -> None:
        for region in self.regions.values():
            region.close()
            region.unlink()
        self.regions.clear()


class SlotPool:
    """Slots handed out one per request in flight and returned after the answer is read."""

    def __init__(self):
        self._free: list[Slot] = []
        self._all: list[Slot] = []
        self._lock = threading.Lock()

    def acquire(self) -> Slot:
        with self._lock:
            if self._free:
                return self._free.pop()
            slot = Slot()
            self._all.append(slot)
            return slot

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._free.append(slot)

    def close(self) -> None:
        with self._lock:
            for slot in self._all:
                slot.close()
            self._all.clear()
            self._free.clear()
