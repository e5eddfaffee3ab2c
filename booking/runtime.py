"""The process's runtime: every shared object the services' callers need, built once.

create_app() builds one Runtime, completely, and keeps it in
app.extensions["boxoffice"]; nothing adds fields to it later. Handlers, tasks
and commands reach it through runtime().
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from .broadcast import Broadcaster, SeatsCoalescer
    from .holds import Settings
    from .intake import BatchingDispatcher, InlineDispatcher
    from .metrics import Metrics
    from .payments import Processor
    from .ratelimits import RequestLimits
    from .state.backends import LocalState, RedisState
    from .state.ledger import RequestLedger
    from .state.presence import Presence, SocketSlots
    from .state.shedding import LoadShedding
    from .waiting_room.gates import GateCache
    from .waiting_room.store import LocalRoomStore, RedisRoomStore


@dataclass
class Runtime:
    settings: Settings                     # the booking limits
    state: RedisState | LocalState         # Redis, or process memory (the embedded mode)
    ledger: RequestLedger                  # requests in flight and answered
    presence: Presence                     # when each buyer was last connected
    sockets: SocketSlots                   # sockets each account holds open, capped
    watchers: SocketSlots                  # signed-out visitors' sockets per client IP, capped
    shedding: LoadShedding                 # the bound on work in flight
    rate_limit: RequestLimits              # per-account and per-IP budgets of socket events
    broadcaster: Broadcaster               # sends what committed transactions changed
    metrics: Metrics
    processor: Processor                   # the card processor
    waiting_room: RedisRoomStore | LocalRoomStore
    gates: GateCache                       # events' sale gates, cached a few seconds
    # Web processes only: seats_changed batching and seat boards; the
    # dispatcher that hands accepted requests to the workers.
    coalescer: SeatsCoalescer | None = None
    dispatcher: BatchingDispatcher | InlineDispatcher | None = None
    # Per web process: sockets connected here, by user and by sid.
    local_users: Counter[int] = field(default_factory=Counter)
    local_sids: dict[str, int] = field(default_factory=dict)
    local_ips: dict[str, str | None] = field(default_factory=dict)  # sid -> client IP
    # Per web process: signed-out visitors' read-only sockets here, sid -> client IP.
    local_watchers: dict[str, str] = field(default_factory=dict)
    # event_id -> {seat_id: price_cents}; an event's seats never change.
    seat_maps: dict[int, dict[int, int]] = field(default_factory=dict)
    # Set once SIGTERM arrived (booking.lifecycle): readiness off, new sockets refused.
    draining: bool = False


def runtime(app=None) -> Runtime:
    """The Runtime of app (default: the current app)."""
    return (app or current_app).extensions["boxoffice"]
