"""Best available: which `count` free seats to give a buyer who asks for the best.

Pure code over seat rows, so the worker can call it inside the transaction that holds
the seats (the pick is then checked against the locked rows: two buyers asking at once
never get the same seats) and tests can call it on any venue.

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

A venue's geometry does not change while it sells, so it is worked out once
(`SeatPlan`: the physical blocks of adjacent seats and each seat's distance) and a
pick then only walks the blocks with the seats free now: a 20,000-seat arena costs a
pass over its blocks with prefix sums, not a rebuild of its rows.
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


class _Block:
    """Adjacent seats of one row, with what a group's score needs as prefix sums."""
    __slots__ = ("ids", "section", "cost", "numbers", "rank", "centre")

    def __init__(self, seats, focal, rank, centre):
        self.ids = [s.id for s in seats]
        self.section = seats[0].section
        self.rank, self.centre = rank, centre
        self.numbers = [0]
        self.cost = [0.0]
        for s in seats:
            self.numbers.append(self.numbers[-1] + s.number)
            d = hypot(s.x - focal[0], s.y - focal[1]) if focal else 0.0
            self.cost.append(self.cost[-1] + d)

    def score(self, start, size, by_focal):
        """Mean distance from the focal point, or front row first then centre of the row."""
        if by_focal:
            return (self.cost[start + size] - self.cost[start]) / size
        middle = (self.numbers[start + size] - self.numbers[start]) / size
        return self.rank * 10_000 + abs(middle - self.centre)


class SeatPlan:
    """A venue's fixed geometry, ready for many picks (one per best-available request)."""

    def __init__(self, seats, focal=None):
        seats = list(seats)
        self.by_focal = bool(focal) and all(s.x is not None and s.y is not None for s in seats)
        focal = focal if self.by_focal else None
        rows = {}
        for s in sorted(seats, key=lambda s: (s.section, s.row, s.number)):
            rows.setdefault((s.section, s.row), []).append(s)
        ranked = sorted(rows, key=lambda r: (r[0], len(r[1]), r[1]))
        rank = {r: i for i, r in enumerate(ranked)}
        self.blocks = []
        for key, row in rows.items():
            centre = (row[0].number + row[-1].number) / 2
            self.blocks += [_Block(b, focal, rank[key], centre) for b in _blocks(row)]
        self.section_of = {s.id: s.section for s in seats}
        self.ids = frozenset(self.section_of)

    def choose(self, free, count, *, prices=None, section=None, max_price_cents=None,
               avoid_singles=True):
        """The ids of the `count` best seats of `free`, or None when too few match.

        free: ids of the seats free now; prices: {id: price_cents} (needed with
        max_price_cents).
        """
        free_ids = set(free) & self.ids
        wanted = {i for i in free_ids
                  if (section is None or self.section_of[i] == section)
                  and (max_price_cents is None or prices[i] <= max_price_cents)}
        if count < 1 or len(wanted) < count:
            return None
        chosen, remaining = [], count
        while remaining:
            size, group = remaining, None
            while size and group is None:
                group = self._best_group(size, wanted, free_ids, avoid_singles)
                size -= group is None
            wanted.difference_update(group)
            free_ids.difference_update(group)
            chosen.extend(group)
            remaining -= len(group)
        return sorted(chosen)

    def _best_group(self, size, wanted, free_ids, avoid_singles):
        best_key, best = None, None
        for block in self.blocks:
            ids = block.ids
            if len(ids) < size:
                continue
            run = 0
            for i, seat_id in enumerate(ids):
                run = run + 1 if seat_id in wanted else 0
                if run < size:
                    continue
                start = i - size + 1
                stranded = avoid_singles and _strands(ids, start, size, free_ids)
                key = (stranded, block.score(start, size, self.by_focal), ids[start])
                if best_key is None or key < best_key:
                    best_key, best = key, ids[start:start + size]
        return best


def _free_run(ids, start, step, free_ids):
    """How many free seats follow `start` (exclusive) in direction `step`, up to two."""
    n, i = 0, start + step
    while n < 2 and 0 <= i < len(ids) and ids[i] in free_ids:
        n += 1
        i += step
    return n


def _strands(ids, start, size, free_ids):
    """Whether taking ids[start:start+size] leaves a lone free seat beside it."""
    return (_free_run(ids, start, -1, free_ids) == 1
            or _free_run(ids, start + size - 1, +1, free_ids) == 1)


def choose_seats(seats, count, *, focal=None, section=None, max_price_cents=None,
                 avoid_singles=True):
    """The ids of the `count` best free seats matching the filters, or None when too few match.

    seats: every seat of the event (taken ones too: they bound the groups) as Candidates.
    focal: (x, y) of the venue's focal point, used when every seat has coordinates.
    """
    seats = list(seats)
    return SeatPlan(seats, focal).choose(
        [s.id for s in seats if s.free], count, prices={s.id: s.price_cents for s in seats},
        section=section, max_price_cents=max_price_cents, avoid_singles=avoid_singles)
