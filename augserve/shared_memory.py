"""Same-host transport: tensors in POSIX shared memory instead of gRPC bytes.

A client on the server's host writes its batch into a region it created and sends only a
reference (name, offset, size); the server reads the batch from the region file and writes the
result into the client's output region. gRPC then carries a few hundred bytes per
batch instead of two copies of the tensors. Region names carry a random token, so they are
unguessable, and the operating system's permissions on ``/dev/shm`` apply as usual.
"""

from __future__ import annotations

import collections
import mmap
import os
import re
import secrets
import stat
import threading
import weakref
from multiprocessing import shared_memory

import numpy as np

from augserve.v1 import augserve_pb2 as pb

NAME = re.compile(r"^augserve_[A-Za-z0-9_]{1,80}$")
OPEN_REGIONS = 256  # regions a server keeps mapped, least recently used dropped first (a client: 2 per slot)
SHM_ROOT = "/dev/shm"  # where POSIX shared memory lives on Linux
MAX_LENT = 8  # results a client holds in its output regions at once; beyond that, results are copied out


class SharedMemoryError(ValueError):
    """A shared-memory reference that cannot be used; the message names the field."""


class Span:
    """``nbytes`` at ``offset`` of an open region file, read and written with ``pread``/``pwrite``.

    The server never maps a client's region: the client (or any process of that user) can
    truncate the file at any moment, and touching a mapping past the new end kills the whole
    process with SIGBUS. A read or write through the file descriptor instead comes up short or
    extends the file, which the server reports as an error for that one request.
    """

    def __init__(self, region: "_Region", offset: int, nbytes: int, field: str):
        self.region, self.offset, self.nbytes, self.field = region, offset, nbytes, field

    def read(self) -> np.ndarray:
        """A private copy of the span: what the client changes or truncates later does not reach it."""
        data = np.empty(self.nbytes, dtype=np.uint8)
        if os.preadv(self.region.fd, [data], self.offset) != self.nbytes:
            raise SharedMemoryError(f"{self.field}: region {self.region.name!r} shrank below "
                                    f"{self.offset + self.nbytes} bytes while it was read")
        return data

    def write(self, data: memoryview) -> None:
        """Copy ``data`` (at most ``nbytes``) into the span."""
        data = data.cast("B")
        if len(data) > self.nbytes:
            raise SharedMemoryError(f"{self.field}: {len(data)} bytes do not fit the {self.nbytes} bytes given")
        written = 0
        while written < len(data):
            written += os.pwrite(self.region.fd, data[written:], self.offset + written)


class _Region:
    """One open region file; its descriptor closes when the cache and every span using it let go."""

    def __init__(self, name: str, descriptor: int, identity: tuple[int, int]):
        self.name, self.fd, self.identity = name, descriptor, identity
        weakref.finalize(self, os.close, descriptor)


class RegionCache:
    """The server side: region files opened by name on first use and kept open, least recently used dropped first.

    Every use re-checks the name (a client may replace a region under the same name) and the
    file's current size, and refuses anything but a regular file. The client, which created
    the region, alone decides when it is unlinked.
    """

    def __init__(self, capacity: int = OPEN_REGIONS, root: str = SHM_ROOT, max_read: int | None = None):
        self.capacity = capacity
        self.root = root
        self.max_read = max_read  # bytes one reference may make the server read (it copies them)
        self._open: collections.OrderedDict[str, _Region] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _region(self, name: str, field: str) -> _Region:
        if not NAME.match(name):
            raise SharedMemoryError(f"{field}.name: expected 'augserve_' then letters, digits or '_', got {name!r}")
        path = os.path.join(self.root, name)
        try:
            status = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            raise SharedMemoryError(f"{field}.name: no shared-memory region {name!r} on the server's host "
                                    "(shared memory works only when client and server share a host)") from None
        with self._lock:
            region = self._open.pop(name, None)
            if region is None or region.identity != (status.st_dev, status.st_ino):
                region = self._open_file(name, path, field)
            self._open[name] = region
            while len(self._open) > self.capacity:
                self._open.popitem(last=False)
            return region

    @staticmethod
    def _open_file(name: str, path: str, field: str) -> _Region:
        try:  # never through a symlink (another local user could point one at a file the server may write),
            # never waiting on a FIFO or device
            descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SharedMemoryError(f"{field}.name: no shared-memory region {name!r} on the server's host") from None
        except PermissionError:
            raise SharedMemoryError(f"{field}.name: the server may not open region {name!r} "
                                    "(it belongs to another user)") from None
        except OSError:  # ELOOP (a symlink), EISDIR, ENXIO (a socket)
            raise SharedMemoryError(f"{field}.name: {name!r} is not a shared-memory region") from None
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            os.close(descriptor)
            raise SharedMemoryError(f"{field}.name: {name!r} is not a shared-memory region (not a regular file)")
        return _Region(name, descriptor, (status.st_dev, status.st_ino))

    def span(self, ref: pb.SharedMemoryRef, nbytes: int, field: str) -> Span:
        """``nbytes`` at ``ref.offset``, after checking they lie within ``ref.size`` and the region as it is now."""
        region = self._region(ref.name, field)
        length = os.fstat(region.fd).st_size
        if nbytes > ref.size or ref.offset + ref.size > length:
            raise SharedMemoryError(f"{field}: expected {nbytes} bytes within size {ref.size} at offset {ref.offset} "
                                    f"of region {ref.name!r} ({length} bytes)")
        return Span(region, ref.offset, nbytes, field)

    def buffer(self, ref: pb.SharedMemoryRef, nbytes: int, field: str) -> np.ndarray:
        """A private copy of ``nbytes`` at the reference (what ``wire.to_numpy`` reads a tensor from)."""
        if self.max_read is not None and nbytes > self.max_read:
            raise SharedMemoryError(f"{field}: {nbytes} bytes exceed the {self.max_read}-byte limit on a request "
                                    "(--max-message-bytes; it holds for shared memory as for bytes)")
        return self.span(ref, nbytes, field).read()

    def close(self) -> None:
        with self._lock:
            self._open.clear()


class Slot:
    """The client side: one input and one output region, grown when a batch needs more room.

    A slot is free, busy (a request in flight) or lent (a result still viewing its output region).
    """

    def __init__(self, pool: "SlotPool"):
        self.pool = pool
        self.regions: dict[str, shared_memory.SharedMemory] = {}
        self.output_bytes = 0  # the largest answer seen, so the output region is made big enough
        self.state = "busy"
        self._lendable: mmap.mmap | None = None  # the output region mapped once more, for results handed out

    def lend(self, array: np.ndarray) -> np.ndarray:
        """A result viewing this slot's output region, handed to the caller without a copy.

        The slot goes back to the pool when the last view of the result is gone (tensors made
        with ``torch.from_numpy`` and their views keep it alive). A copy instead when the pool
        has ``MAX_LENT`` results out already, so results a caller keeps do not pin ever more memory.
        """
        return self.pool.lend(self, array)

    def buffer(self, ref: pb.SharedMemoryRef, nbytes: int, field: str) -> memoryview:
        """Resolve a reference to this slot's own output region (what the server wrote), and nothing else."""
        region = self.regions.get("out")
        if region is None or ref.name != region.name or ref.offset + nbytes > region.size:
            raise SharedMemoryError(f"{field}: expected {nbytes} bytes in this request's output region")
        if self._lendable is None:
            # A mapping of our own: SharedMemory.close() refuses while results view its buffer; this one
            # simply lives as long as the last of them.
            self._lendable = mmap.mmap(region._fd, region.size)  # noqa: SLF001 - the only handle to the descriptor
        return memoryview(self._lendable)[ref.offset:ref.offset + nbytes]

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
            if kind == "out":
                self._lendable = None
        return region

    def close(self) -> None:
        for region in self.regions.values():
            region.close()
            region.unlink()
        self.regions.clear()
        self._lendable = None  # unmapped when the last result lent from it is gone


class SlotPool:
    """Slots handed out one per request in flight, returned after the answer is read or, when the answer
    was lent to the caller, when the caller lets go of it."""

    def __init__(self, max_lent: int = MAX_LENT):
        self.max_lent = max_lent
        self._free: list[Slot] = []
        self._all: list[Slot] = []
        self._lent = 0
        self._closed = False
        self._lock = threading.RLock()  # re-entrant: a lent result may be collected while the lock is held

    def acquire(self) -> Slot:
        with self._lock:
            if self._free:
                slot = self._free.pop()
                slot.state = "busy"
                return slot
            slot = Slot(self)
            self._all.append(slot)
            return slot

    def release(self, slot: Slot) -> None:
        """Back to the pool once its answer is read; a lent slot comes back when its result is gone."""
        with self._lock:
            if slot.state == "busy" and not self._closed:
                slot.state = "free"
                self._free.append(slot)

    def lend(self, slot: Slot, array: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._lent >= self.max_lent or slot.state != "busy":
                return array.copy()
            self._lent += 1
            slot.state = "lent"
        owner = array  # numpy views collapse their base to the first array that does not view another
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        weakref.finalize(owner, self._returned, slot)
        return array

    def discard(self, slot: Slot) -> None:
        """A busy slot whose regions a server may still write (offered on a stream that ended): never reused."""
        with self._lock:
            if slot in self._all and slot.state == "busy":
                self._all.remove(slot)
                slot.close()

    def _returned(self, slot: Slot) -> None:
        with self._lock:
            self._lent -= 1
            slot.state = "busy"
        self.release(slot)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for slot in self._all:
                slot.close()
            self._all.clear()
            self._free.clear()
