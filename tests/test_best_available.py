"""Best available: the picker's rules on small venues drawn in the test.

A row is drawn as a string: '.' a free seat, 'x' a taken one, ' ' an aisle (a gap
in the coordinates; numbers keep counting across it as they do in real venues).
"""
import random

from booking.best_available import Candidate, choose_seats


def venue(*rows, section="Stalls", price=5000, spacing=1.0):
    """Candidates for rows drawn front (stage) to back; the stage is at y = -1."""
    seats, next_id = [], 1
    for r, drawing in enumerate(rows):
        number = 0
        for col, mark in enumerate(drawing):
            if mark == " ":
                continue
            number += 1
            seats.append(Candidate(id=next_id, section=section, row=chr(65 + r), number=number,
                                   price_cents=price, free=mark == ".", x=col * spacing,
                                   y=float(r)))
            next_id += 1
    return seats


def picked(seats, ids):
    by_id = {s.id: s for s in seats}
    return [(by_id[i].row, by_id[i].number) for i in ids]


def centre(seats):
    xs = [s.x for s in seats]
    return ((min(xs) + max(xs)) / 2, -1.0)


def test_together_in_one_row_closest_to_the_stage():
    seats = venue("x.x.x.x.x", "..........")
    # Row A has no two adjacent free seats: the pair comes from row B, in its centre.
    assert picked(seats, choose_seats(seats, 2, focal=centre(seats))) == [("B", 5), ("B", 6)]


def test_nearer_the_stage_wins_by_distance_not_by_row():
    # Row A has a group at its centre: closer than anything in row B.
    seats = venue("xxx...xxxx", "..........")
    assert {r for r, _ in picked(seats, choose_seats(seats, 3, focal=centre(seats)))} == {"A"}
    # Row A's only group is at its far end: row B's centre is nearer the stage.
    seats = venue("...xxxxxxx", "..........")
    assert {r for r, _ in picked(seats, choose_seats(seats, 3, focal=centre(seats)))} == {"B"}


def test_a_single_seat_is_not_stranded_when_another_choice_exists():
    seats = venue("...x", "xx..xx")
    ids = choose_seats(seats, 2, focal=(1.0, -1.0))
    # A1-A2 leaves A3 alone, A2-A3 leaves A1 alone: both strand. B3-B4 strands nothing.
    assert picked(seats, ids) == [("B", 3), ("B", 4)]


def test_stranding_is_accepted_when_nothing_else_exists():
    seats = venue("...x")
    assert len(choose_seats(seats, 2)) == 2


def test_the_rule_can_be_turned_off():
    seats = venue("...x", "xx..xx")
    ids = choose_seats(seats, 2, focal=(1.0, -1.0), avoid_singles=False)
    assert {r for r, _ in picked(seats, ids)} == {"A"}


def test_an_aisle_splits_a_row():
    # Seats 3 and 4 of row A follow in number but an aisle lies between them.
    seats = venue("..  ..", "xxxxxx")
    ids = choose_seats(seats, 4)
    assert picked(seats, ids) is not None
    # No four adjacent seats: two groups of two, never a "group" across the aisle.
    assert len(ids) == 4
    ids3 = choose_seats(seats, 3)
    rows = picked(seats, ids3)
    assert sorted(n for _, n in rows) in ([1, 2, 3], [1, 2, 4], [1, 3, 4], [2, 3, 4])


def test_filters_and_too_few():
    cheap = venue("....", section="Balcony", price=2000)
    dear = [Candidate(id=s.id + 100, section="Stalls", row=s.row, number=s.number,
                      price_cents=9000, free=True, x=s.x, y=s.y + 10) for s in cheap]
    seats = cheap + dear
    assert all(i > 100 for i in choose_seats(seats, 2, section="Stalls"))
    assert all(i < 100 for i in choose_seats(seats, 3, max_price_cents=4500))
    assert choose_seats(seats, 5, max_price_cents=4500) is None
    assert choose_seats(seats, 0) is None
    assert choose_seats(venue("xxxx"), 1) is None


def test_without_coordinates_front_row_then_centre():
    seats = [Candidate(id=i, section="Main", row=row, number=n, price_cents=100, free=True)
             for i, (row, n) in enumerate(((r, n) for r in "AB" for n in range(1, 8)), 1)]
    assert picked(seats, choose_seats(seats, 3)) == [("A", 3), ("A", 4), ("A", 5)]


def test_random_venues_keep_every_promise():
    """On random half-sold venues: never a taken or filtered seat, the right count,
    one row when a row has room, no stranded single when a stranding-free group exists."""
    rng = random.Random(7)
    for _ in range(300):
        rows = ["".join(rng.choice("..x") for _ in range(rng.randint(3, 14)))
                for _ in range(rng.randint(1, 5))]
        seats = venue(*rows)
        count = rng.randint(1, 5)
        ids = choose_seats(seats, count, focal=centre(seats))
        free = [s for s in seats if s.free]
        if len(free) < count:
            assert ids is None
            continue
        by_id = {s.id: s for s in seats}
        assert len(ids) == count == len(set(ids))
        assert all(by_id[i].free for i in ids)
        has_row_group = any(("." * count) in "".join(
            "." if s.free else "x" for s in seats if s.row == row) for row in {s.row for s in seats})
        if has_row_group:
            group = [by_id[i] for i in ids]
            assert len({s.row for s in group}) == 1
            numbers = sorted(s.number for s in group)
            assert numbers == list(range(numbers[0], numbers[0] + count))
            drawings = {chr(65 + r): d for r, d in enumerate(rows)}
            clean = [(row, i) for row, d in drawings.items() for i in range(len(d) - count + 1)
                     if d[i:i + count] == "." * count and not _strands(d, i, count)]
            if clean:
                assert not _strands(drawings[group[0].row], numbers[0] - 1, count), (rows, count)


def _strands(drawing, start, count):
    """Whether taking drawing[start:start+count] leaves one free seat alone beside it."""
    left = len(drawing[:start]) - len(drawing[:start].rstrip("."))
    right_part = drawing[start + count:]
    right = len(right_part) - len(right_part.lstrip("."))
    return left == 1 or right == 1
