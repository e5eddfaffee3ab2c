"""Calendar files (.ics, RFC 5545) for events, with the icalendar library."""
from datetime import timedelta, timezone

from icalendar import Calendar, Event as VEvent

# The model has no end time: calendars show this long a slot.
DEFAULT_DURATION = timedelta(hours=2)


def event_ics(event, url, host):
    """The .ics bytes of one event (start in UTC; calendars show it in the viewer's zone)."""
    cal = Calendar()
    cal.add("prodid", "-//Boxoffice//Tickets//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    item = VEvent()
    item.add("uid", f"event-{event.id}@{host}")
    item.add("summary", event.name)
    start = event.starts_at.replace(tzinfo=timezone.utc)
    item.add("dtstart", start)
    item.add("dtend", start + DEFAULT_DURATION)
    item.add("dtstamp", event.created_at.replace(tzinfo=timezone.utc))
    item.add("location", event.venue.name)
    item.add("url", url)
    item.add("description", f"Your tickets: {url}")
    cal.add_component(item)
    return cal.to_ical()
