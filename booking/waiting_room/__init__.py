"""The waiting room: a fair, shared queue in front of an event's on-sale.

Who waits where (per event, per account, never per socket):

- before the on-sale, arrivals enter a *pre-queue*. Each gets a secret random
  ticket (64 bits from the OS) the moment they arrive; at the on-sale the
  pre-queue is turned into the queue in ticket order, so the order is a uniform
  random draw and arriving early gives no edge;
- after the draw, arrivals join the back of the queue (first come, first served);
- admission moves people from the front at the event's rate (buyers per minute,
  set by ops, or derived from how the workers keep up: see AutoRate) and gives
  each an *admission token*: signed, bound to the account and the event,
  expiring. `hold` on a gated event needs a valid one.

The queue lives in Redis (RedisRoomStore, every step one Lua script, so that
web instances, workers and ops commands agree and no step is half done), or in
process memory in the embedded one-process mode (LocalRoomStore, the same
semantics under a lock). Nothing here decides a seat: MySQL still does.

The package, by what each module owns: tokens (admission tokens), gates (an
event's sale as the web tier sees it, cached), rate (the derived admission
rate), store (the two stores), service (entering, places, the admission tick,
ops setters). Its settings are in booking.config; its page in booking.pages;
the tick's commit and sends in workers.tasks.admit_waiting_buyers.

A position only ever falls: people ahead leave (admitted) and newcomers go
behind. Each update carries `seq`, the number admitted so far, so a client that
hears two updates out of order keeps the newer one.
"""
# The package's public names, for the callers that import them from here
# (sockets, intake, the tasks, the ops commands and pages).
from .gates import Gate, GateCache, check_hold_allowed, read_gate
from .rate import AutoRate
from .service import (Tick, admit_due, describe, enter, position_updates, room_status,
                      set_on_sale, set_rate, set_room)
from .store import (ADMITTED, PRE_QUEUE, QUEUED, LocalRoomStore, RedisRoomStore,
                    make_room_store)
from .tokens import check_token, iso, issue_token

__all__ = ["ADMITTED", "PRE_QUEUE", "QUEUED", "AutoRate", "Gate", "GateCache", "LocalRoomStore",
           "RedisRoomStore", "Tick", "admit_due", "check_hold_allowed", "check_token",
           "describe", "enter", "iso", "issue_token", "make_room_store", "position_updates",
           "read_gate", "room_status", "set_on_sale", "set_rate", "set_room"]
