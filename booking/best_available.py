"""Best available: which `count` free seats to give a buyer who asks for the best.

A pure function over seat rows, so the worker can call it inside the transaction that
holds the seats (the pick is then checked against the locked rows: two buyers asking
at once never get the same seats) and tests can call it on any venue.

What "best" means, in order:
1. Together: `count` adjacent seats in one row when the venue has such a group.
   Seats are adjacent when their numbers follow each other in a row and, where the
   layout gives coordinates, no aisle lies between them (a gap wider than 1.5 times
   the row's usual seat spacing).
2. No single seat stranded: a choice that leaves exactly one free seat between the
   group and a taken seat, an aisle or the row's end is taken only when no other
   choice of the same size exists (`avoid_singles`).
3. Closest to the venue's focal point (the layout's stage centre): the group's mean
   distance; without coordinates, the front row first, then the centre of the row.
When no row has `count` adjacent seats, the buyer gets the fewest groups possible:
the largest group that exists, then the largest for the rest, each chosen by the same
rules.
"""
from dataclasses import dataclass
from math import hypot
from statistics import median


@dataclass(frozen=True)
class Candidate:
    """One seat as the picker sees it."""
    id: int
    section: str
    row: str
    number: int
    price_cents: int
    free: bool
    x: float | None = None
    y: float | None = None


def _blocks(row_seats):
    """Split one row (sorted by number) into physical blocks between aisles and gaps."""
    spacing = None
    steps = [hypot(b.x - a.x, b.y - a.y) for a, b in zip(row_seats, row_seats[1:])
             if b.number == a.number + 1 and None not in (a.x, a.y, b.x, b.y)]
    if steps:
        spacing = median(steps)
    blocks, current = [], [row_seats[0]]
    for a, b in zip(row_seats, row_seats[1:]):
        adjacent = b.number == a.number + 1
        if adjacent and spacing and None not in (a.x, a.y, b.x, b.y):
            adjacent = hypot(b.x - a.x, b.y - a.y) <= 1.5 * spacing
        if adjacent:
            current.append(b)
        else:
            blocks.append(current)
            current = [b]
    blocks.append(current)
    return blocks


def _free_run(block, start, step, wanted):
    """How many wanted seats follow `start` (exclusive) in direction `step` before a gap."""
    n, i = 0, start + step
    while 0 <= i < len(block) and block[i].id in wanted:
        n += 1
        i += step
    return n


class _Scorer:
    """Distance of a group from the focal point (or front-and-centre without geometry)."""

    def __init__(self, seats, focal):
        self.focal = focal if focal and all(s.x is not None and s.y is not None
                                            for s in seats) else None
        rows = sorted({(s.section, s.row) for s in seats}, key=lambda r: (r[0], len(r[1]), r[1]))
        self.row_rank = {r: i for i, r in enumerate(rows)}
        self.row_centre = {}
        for s in seats:
            lo, hi = self.row_centre.get((s.section, s.row), (s.number, s.number))
            self.row_centre[(s.section, s.row)] = (min(lo, s.number), max(hi, s.number))

    def __call__(self, group):
        if self.focal:
            fx, fy = self.focal
            return sum(hypot(s.x - fx, s.y - fy) for s in group) / len(group)
        key = (group[0].section, group[0].row)
        lo, hi = self.row_centre[key]
        middle = sum(s.number for s in group) / len(group)
        return self.row_rank[key] * 10_000 + abs(middle - (lo + hi) / 2)


def _windows(blocks, size, wanted):
    """Every run of `size` adjacent wanted seats: (block, start index)."""
    for block in blocks:
        run = 0
        for i, seat in enumerate(block):
            run = run + 1 if seat.id in wanted else 0
            if run >= size:
                yield block, i - size + 1


def _strands(block, start, size, free_ids):
    """Whether taking block[start:start+size] leaves a lone free seat beside it."""
    left = _free_run(block, start, -1, free_ids)
    right = _free_run(block, start + size - 1, +1, free_ids)
    return left == 1 or right == 1


def _best_group(blocks, size, wanted, free_ids, score, avoid_singles):
    best = None
    for block, start in _windows(blocks, size, wanted):
        group = block[start:start + size]
        key = (avoid_singles and _strands(block, start, size, free_ids), score(group),
               group[0].id)
        if best is None or key < best[0]:
            best = (key, group)
    return best[1] if best else None


def choose_seats(seats, count, *, focal=None, section=None, max_price_cents=None,
                 avoid_singles=True):
    """The ids of the `count` best free seats matching the filters, or None when too few match.

    seats: every seat of the event (taken ones too: they bound the groups) as Candidates.
    focal: (x, y) of the venue's focal point, used when every seat has coordinates.
    """
    seats = list(seats)
    wanted = {s.id for s in seats if s.free and (section is None or s.section == section)
              and (max_price_cents is None or s.price_cents <= max_price_cents)}
    if count < 1 or len(wanted) < count:
        return None
    free_ids = {s.id for s in seats if s.free}
    rows = {}
    for s in sorted(seats, key=lambda s: (s.section, s.row, s.number)):
        rows.setdefault((s.section, s.row), []).append(s)
    blocks = [b for row in rows.values() for b in _blocks(row)]
    score = _Scorer(seats, focal)
    chosen, remaining = [], count
    while remaining:
        size = remaining
        group = None
        while size and group is None:
            group = _best_group(blocks, size, wanted, free_ids, score, avoid_singles)
            size -= group is None
        for s in group:
            wanted.discard(s.id)
            free_ids.discard(s.id)
        chosen.extend(s.id for s in group)
        remaining -= len(group)
    return sorted(chosen)
