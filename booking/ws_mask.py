"""Unmasking WebSocket frames in C instead of one Python object per byte.

Every frame a browser sends is masked (RFC 6455, 5.3). eventlet's server
(`eventlet.websocket.RFC6455WebSocket._apply_mask`, eventlet 0.41) unmasks it
with a generator that builds a one-byte `bytes` per byte of payload: 29 µs for
a 130-byte hold request and 237 µs for 1 KiB on the 2-core bench machine, where
this module, on `websockets.speedups.apply_mask` (C, from the `websockets`
library), takes 0.4 and 0.5 µs (docs/BENCHMARKS.md, "Fewer Redis round trips per
request, and unmasking in C").

install() swaps eventlet's function for one that calls the C function; the
frames' parsing, limits and UTF-8 checks stay eventlet's. Only the web process
calls it (wsgi.py), after eventlet is imported.
"""
from eventlet.websocket import RFC6455WebSocket
from websockets.speedups import apply_mask as _c_apply_mask


def apply_mask(data, mask, length=None, offset=0):
    """eventlet's signature: data[:length] XOR the 4-byte mask (a tuple of ints),
    starting at byte `offset` of the mask's cycle (a frame read in several pieces)."""
    if length is not None and length != len(data):
        data = data[:length]
    key = bytes(mask[(offset + i) % 4] for i in range(4)) if offset % 4 else bytes(mask)
    return _c_apply_mask(data, key)


def install():
    RFC6455WebSocket._apply_mask = staticmethod(apply_mask)
