"""booking.ws_mask unmasks exactly as eventlet's own function does, at any offset."""
import os
import random
import warnings

with warnings.catch_warnings():
    # eventlet announces its deprecation on import; only the web process serves on it.
    warnings.simplefilter("ignore")
    from eventlet.websocket import RFC6455WebSocket

    from booking import ws_mask

_EVENTLETS = RFC6455WebSocket.__dict__["_apply_mask"].__func__
assert _EVENTLETS is not ws_mask.apply_mask, "compare with eventlet's own, not ours"


def test_same_bytes_as_eventlets_function_for_every_offset_and_length():
    rng = random.Random(7)
    for n in (0, 1, 2, 3, 4, 5, 7, 125, 126, 130, 4096):
        data = os.urandom(n)
        mask = [rng.getrandbits(8) for _ in range(4)]
        for offset in range(6):
            assert ws_mask.apply_mask(data, tuple(mask), length=n, offset=offset) \
                == _EVENTLETS(data, tuple(mask), length=n, offset=offset)
            assert ws_mask.apply_mask(data, mask, n, offset) == _EVENTLETS(data, mask, n, offset)


def test_unmasking_twice_gives_the_frame_back_and_a_shorter_length_cuts():
    data, mask = b'42["hold",{"request_id":"r1"}]', (1, 2, 3, 250)
    assert ws_mask.apply_mask(ws_mask.apply_mask(data, mask), mask) == data
    assert ws_mask.apply_mask(data, mask, length=5) == _EVENTLETS(data, mask, length=5)
