"""Who a request belongs to, and what that tenant may use of the server.

A request's tenant is the name bound to its bearer token in the config's ``tenants:`` section, else
the name it declares in the ``x-augserve-tenant`` metadata header, else its connection (the peer
address). Each tenant has a weight (its share of the device under contention), a queue limit
(samples waiting) and an in-flight limit (requests admitted and not yet answered).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc

from augserve.transport import TENANT_HEADER as HEADER
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FIELDS = {"token", "weight", "max_queue", "max_in_flight"}


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

    def __init__(self, section: dict | None, max_queue: int):
        section = dict(section or {})
        unknown = sorted(set(section) - {"default", "named"})
        if unknown:
            raise ValueError(f"tenants: unknown key(s) {unknown} (expected default, named)")
        self.default = self._settings("tenants.default", section.get("default") or {},
                                      {"weight": 1.0, "max_queue": max_queue, "max_in_flight": 256})
        self.named: dict[str, Tenant] = {}
        self.by_token: dict[str, Tenant] = {}
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
        """The tenant of a call, from its metadata and peer; TenantRefused for a bad declared name."""
        values = dict(metadata or ())
        token = str(values.get("authorization", "")).removeprefix("Bearer ")
        if token in self.by_token:
            return self.by_token[token]
        declared = values.get(HEADER)
        if declared:
            if not NAME.match(declared):
                raise TenantRefused(grpc.StatusCode.INVALID_ARGUMENT, f"{HEADER}: {declared!r} is not a tenant "
                                    "name (letters, digits, _ . -; at most 64)")
            known = self.named.get(declared)
            if known is not None and known.source == "token":
                raise TenantRefused(grpc.StatusCode.PERMISSION_DENIED, f"{HEADER}: tenant {declared!r} is bound "
                                    "to a token; send that token instead")
            return known or Tenant(declared, source="header", **self._defaults())
        return Tenant(f"connection {peer}", **self._defaults())

    def _defaults(self) -> dict:
        return dict(self.default)
