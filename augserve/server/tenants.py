"""Who a request belongs to, and what that tenant may use of the server.

A request's tenant is the name bound to its bearer token in the config's ``tenants:`` section, else
the name it declares in the ``x-augserve-tenant`` metadata header, else its connection (the peer
address). Each tenant has a weight (its share of the device under contention), a queue limit
(samples waiting) and an in-flight limit (requests admitted and not yet answered).

Names declared by header are remembered while in use: at most ``max_declared`` at a time, each forgotten
(with its metric series) after ``declared_idle_seconds`` without a request. Past the cap, new names share
the ``(overflow)`` tenant, so no client can grow the books or the metrics by inventing names.
"""

from __future__ import annotations

import collections
import re
import time
from dataclasses import dataclass
from typing import Callable

import grpc

from augserve.spec import shown
from augserve.transport import TENANT_HEADER as HEADER
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELDS = {"token", "weight", "max_queue", "max_in_flight"}
SECTION = {"default", "named", "max_declared", "declared_idle_seconds"}
MAX_DECLARED = 1024
DECLARED_IDLE_SECONDS = 300.0
OVERFLOW = "(overflow)"  # not a valid name, so no client can declare it


@dataclass(frozen=True)
class Tenant:
    name: str
    weight: float = 1.0
    max_queue: int = 4096  # samples waiting for the device
    max_in_flight: int = 256  # requests admitted and not yet answered
    source: str = "connection"  # token, header or connection


class TenantRefused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class Tenants:
    """The ``tenants:`` section: ``default`` settings and named tenants, each optionally bound to a token."""

    def __init__(self, section: dict | None, max_queue: int, forget: Callable[[str], None] = lambda name: None):
        section = dict(section or {})
        unknown = sorted(set(section) - SECTION)
        if unknown:
            raise ValueError(f"tenants: unknown key(s) {unknown} (expected {', '.join(sorted(SECTION))})")
        self.default = self._settings("tenants.default", section.get("default") or {},
                                      {"weight": 1.0, "max_queue": max_queue, "max_in_flight": 256})
        self.max_declared = section.get("max_declared", MAX_DECLARED)
        if isinstance(self.max_declared, bool) or not (isinstance(self.max_declared, int)
                                                       and 0 <= self.max_declared <= MAX_DECLARED):
            raise ValueError(f"tenants.max_declared: expected an integer in [0, {MAX_DECLARED}], "
                             f"got {self.max_declared!r}")
        self.idle_seconds = section.get("declared_idle_seconds", DECLARED_IDLE_SECONDS)
        if isinstance(self.idle_seconds, bool) or not (isinstance(self.idle_seconds, (int, float))
                                                       and self.idle_seconds > 0):
            raise ValueError(f"tenants.declared_idle_seconds: expected a number > 0, got {self.idle_seconds!r}")
        self.named: dict[str, Tenant] = {}
        self.by_token: dict[str, Tenant] = {}
        self._declared: collections.OrderedDict[str, float] = collections.OrderedDict()  # name: last use
        self._forget = forget
        for name, entry in (section.get("named") or {}).items():
            if not NAME.match(str(name)):
                raise ValueError(f"tenants.named: {name!r} is not a tenant name (letters, digits, _ . -; "
                                 "at most 64)")
            settings = self._settings(f"tenants.named.{name}", entry or {}, self.default)
            tenant = Tenant(name, source="token" if (entry or {}).get("token") else "header", **settings)
            self.named[name] = tenant
            if (entry or {}).get("token"):
                self.by_token[str(entry["token"])] = tenant

    @staticmethod
    def _settings(where: str, entry: dict, defaults: dict) -> dict:
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown} (allowed: {', '.join(sorted(FIELDS))})")
        settings = {key: entry.get(key, defaults[key]) for key in ("weight", "max_queue", "max_in_flight")}
        if not (isinstance(settings["weight"], (int, float)) and settings["weight"] > 0):
            raise ValueError(f"{where}.weight: expected a number > 0, got {settings['weight']!r}")
        for key in ("max_queue", "max_in_flight"):
            if not (isinstance(settings[key], int) and settings[key] >= 1):
                raise ValueError(f"{where}.{key}: expected an integer >= 1, got {settings[key]!r}")
        return settings

    @property
    def tokens(self) -> list[str]:
        return list(self.by_token)

    def of(self, metadata, peer: str) -> Tenant:
        """The tenant of a call, from its metadata and peer; TenantRefused for a bad declared name or several
        ``authorization`` headers."""
        metadata = tuple(metadata or ())
        tokens = [value for key, value in metadata if key == "authorization"]
        if len(tokens) > 1 and self.by_token:  # which one would count? (proxies and libraries disagree)
            raise TenantRefused(grpc.StatusCode.UNAUTHENTICATED, f"authorization: {len(tokens)} headers; send one")
        token = str(tokens[0] if len(tokens) == 1 else "").removeprefix("Bearer ")
        if token in self.by_token:
            return self.by_token[token]
        names = [value for key, value in metadata if key == HEADER]
        if len(names) > 1:
            raise TenantRefused(grpc.StatusCode.INVALID_ARGUMENT, f"{HEADER}: {len(names)} headers; send one")
        declared = names[0] if names else None
        if declared:
            if not NAME.match(declared):
                raise TenantRefused(grpc.StatusCode.INVALID_ARGUMENT, f"{HEADER}: {shown(declared)} is not a "
                                    "tenant name (letters, digits, _ . -; at most 64)")
            known = self.named.get(declared)
            if known is not None and known.source == "token":
                raise TenantRefused(grpc.StatusCode.PERMISSION_DENIED, f"{HEADER}: tenant {declared!r} is bound "
                                    "to a token; send that token instead")
            return known or Tenant(self._declare(declared), source="header", **self._defaults())
        return Tenant(f"connection {peer}", **self._defaults())

    def declared(self) -> list[Tenant]:
        """The tenants declared by header and not forgotten yet."""
        self._forget_idle(time.monotonic())
        return [Tenant(name, source="header", **self._defaults()) for name in self._declared]

    def _declare(self, name: str) -> str:
        """The name a declared tenant is booked under: its own while there is room, else ``OVERFLOW``."""
        now = time.monotonic()
        self._forget_idle(now)
        if name in self._declared or len(self._declared) < self.max_declared:
            self._declared[name] = now
            self._declared.move_to_end(name)
            return name
        return OVERFLOW

    def _forget_idle(self, now: float) -> None:
        while self._declared:
            name, used = next(iter(self._declared.items()))
            if now - used < self.idle_seconds:
                return
            del self._declared[name]
            self._forget(name)

    def _defaults(self) -> dict:
        return dict(self.default)
