// The event list: local dates and prices, and seats left kept live.
import { getJSON, localizeDates, localizePrices, page } from "app/common";
import { openLive, SeatVersions, setLiveStatus } from "app/live";

localizeDates();
localizePrices();

const cards = new Map(
  [...document.querySelectorAll("#event-list [data-event-id]")].map((li) => [Number(li.dataset.eventId), li]),
);

function showSeatsLeft(eventId, available) {
  const badge = cards.get(eventId)?.querySelector(".seats-left");
  if (!badge) return;
  const total = Number(badge.dataset.total);
  badge.textContent = available > 0 ? `${available} of ${total} seats left` : "Sold out";
  badge.classList.toggle("text-bg-success", available > 0);
  badge.classList.toggle("text-bg-secondary", available <= 0);
}

if (cards.size && page.signed_in) {
  // Signed in: watch every listed event over the socket, like the event page does.
  const seatsByEvent = new Map([...cards.keys()].map((id) => [id, new SeatVersions()]));
  const socket = openLive({
    onConnect: () => {
      for (const eventId of cards.keys()) {
        socket.timeout(15000).emit("join_event", { event_id: eventId }, (timedOut, ack) => {
          if (timedOut || !ack.ok) return;
          const seats = seatsByEvent.get(eventId);
          seats.apply(ack.seats);
          showSeatsLeft(eventId, seats.count("available"));
        });
      }
    },
  });
  socket.on("seats_changed", (msg) => {
    const seats = seatsByEvent.get(msg.event_id);
    if (seats && seats.apply(msg.seats).length) showSeatsLeft(msg.event_id, seats.count("available"));
  });
} else if (cards.size) {
  // Visitors have no socket: refresh the counts now and then while the page is in view.
  setLiveStatus("anonymous");
  setInterval(async () => {
    if (document.hidden) return;
    try {
      for (const e of await getJSON("/api/v1/events")) showSeatsLeft(e.id, e.seats_available);
    } catch (err) { /* keep the last counts; try again next time */ }
  }, 15000);
}
