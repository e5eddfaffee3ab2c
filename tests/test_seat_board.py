"""The web process's live seat board: joins answer from it, and it never shows an old version.

A join used to read every seat of the event from MariaDB; now each web process
reads an event once and applies every change it receives. These tests drive the
board directly (the end-to-end convergence of watchers on every instance is in
tests/test_holds_race.py).
"""
from booking.broadcast import SeatsCoalescer


class _NoSocket:
    def emit(self, *args, **kwargs):
        pass


def _seat(i, status, version):
    return {"id": i, "status": status, "version": version}


def _board():
    return SeatsCoalescer(_NoSocket(), 0.1, local_only=True)


def test_join_reads_the_database_once_then_follows_changes():
    board, reads = _board(), []

    def load():
        reads.append(1)
        return [_seat(1, "available", 0), _seat(2, "available", 0), _seat(3, "sold", 4)]

    assert board.snapshot(7, load) == [_seat(1, "available", 0), _seat(2, "available", 0),
                                       _seat(3, "sold", 4)]
    board.add(7, [_seat(2, "held", 1)], "2026-11-24T00:00:00Z")
    board.add(7, [_seat(2, "available", 0)], "2026-11-24T00:00:00Z")  # older: ignored
    board.add(8, [_seat(9, "held", 1)], "2026-11-24T00:00:00Z")       # another event
    assert board.snapshot(7, load) == [_seat(1, "available", 0), _seat(2, "held", 1),
                                       _seat(3, "sold", 4)]
    assert len(reads) == 1


def test_a_change_received_while_reading_is_kept():
    """The database read can be older than a change the subscription delivers meanwhile."""
    board = _board()

    def load():
        # The worker commits version 1 of seat 1 and its message arrives while
        # this read is still running; the rows read show version 0.
        board.add(7, [_seat(1, "held", 1)], "2026-11-24T00:00:00Z")
        return [_seat(1, "available", 0), _seat(2, "available", 0)]

    assert board.snapshot(7, load)[0] == _seat(1, "held", 1)
    assert board.snapshot(7, lambda: []) == [_seat(1, "held", 1), _seat(2, "available", 0)]


def test_the_board_is_read_again_when_old():
    board = _board()
    board.snapshot(7, lambda: [_seat(1, "available", 0)])
    board._boards[7]["built"] -= SeatsCoalescer.BOARD_MAX_AGE_S + 1
    # A change this process missed (say while its subscription was down) is
    # in the database: the next read brings it; a newer received one still wins.
    board.add(7, [_seat(2, "held", 5)], "2026-11-24T00:00:00Z")
    assert board.snapshot(7, lambda: [_seat(1, "sold", 3), _seat(2, "held", 4)]) == [
        _seat(1, "sold", 3), _seat(2, "held", 5)]


def test_after_a_lost_subscription_every_board_is_read_again():
    """Changes published while the subscription was down never arrive: the database has them."""
    board = _board()
    board.snapshot(7, lambda: [_seat(1, "available", 0)])
    board.forget_boards()   # what the web process does when its subscription comes back
    assert board.snapshot(7, lambda: [_seat(1, "held", 1)]) == [_seat(1, "held", 1)]
