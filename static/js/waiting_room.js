// The waiting room: the buyer's live place in the queue; on to the seat map once admitted.
import { errorText, page, showMessage } from "app/common";
import { openLive } from "app/live";

const eventId = page.event_id;
const stateText = document.getElementById("queue-state");
const waitText = document.getElementById("queue-wait");
const bar = document.getElementById("queue-bar");
let newest = -1; // seq of the newest place shown: older updates are ignored
let firstPosition = null;
let rejoinTimer = null;

function duration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} seconds`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} minutes`;
  return `${(seconds / 3600).toFixed(1)} hours`;
}

// The estimate as a range: a single number would promise more than we know.
function waitSentence(room) {
  const [low, high] = room.eta_range_s || [];
  if (room.paused) return "The queue is paused for a moment; your place is kept.";
  if (room.eta_s == null) return "We cannot estimate your wait yet.";
  if (low != null && high != null && high - low >= 10) {
    return `Estimated wait: between ${duration(low)} and ${duration(high)}.`;
  }
  return `Estimated wait: about ${duration(room.eta_s)}.`;
}

function goToSeats() {
  window.location.replace(`/events/${eventId}`);
}

function show(room) {
  if (room.seq < newest) return;
  newest = room.seq;
  if (room.state === "admitted") {
    stateText.textContent = "It is your turn! Taking you to the seat map…";
    waitText.textContent = "";
    bar.style.width = "100%";
    goToSeats();
    return;
  }
  if (room.state === "pre_queue") {
    stateText.textContent = `You are in. ${room.pre_queue} ${room.pre_queue === 1 ? "person is" : "people are"} waiting for the sale to start; places are drawn at random then.`;
  } else {
    if (firstPosition === null || room.position > firstPosition) firstPosition = room.position;
    stateText.textContent = room.ahead === 0 ? "You are next."
      : `You are number ${room.position} in the queue: ${room.ahead} ${room.ahead === 1 ? "person" : "people"} ahead of you.`;
    const done = firstPosition > 1 ? (firstPosition - room.position) / (firstPosition - 1) : 0;
    bar.style.width = `${Math.round(done * 100)}%`;
    bar.parentElement.setAttribute("aria-valuenow", String(Math.round(done * 100)));
  }
  waitText.textContent = waitSentence(room);
}

function join(socket) {
  socket.timeout(15000).emit("join_event", { event_id: eventId }, (timedOut, ack) => {
    if (timedOut) return; // the next connect joins again
    if (!ack.ok) {
      showMessage(errorText(ack.error), "danger");
      return;
    }
    // No waiting room (any more): straight to the seats.
    if (!ack.waiting_room) {
      goToSeats();
      return;
    }
    show(ack.waiting_room);
  });
}

const socket = openLive({ onConnect: join });
socket.on("queue_update", (update) => {
  if (update.event_id === eventId) show(update);
});
socket.on("admitted", (message) => {
  if (message.event_id === eventId) show({ state: "admitted", seq: Infinity });
});
// Socket messages are hints: ask again now and then, in case one was missed.
// The jitter spreads a crowd's questions over the interval.
function scheduleRejoin() {
  clearTimeout(rejoinTimer);
  rejoinTimer = setTimeout(() => {
    if (socket.connected) join(socket);
    scheduleRejoin();
  }, 20000 + Math.random() * 20000);
}
scheduleRejoin();
