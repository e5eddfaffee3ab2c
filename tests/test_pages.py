"""Pages for people: what a buyer gets from a wrong link."""


def test_unknown_event_page_is_a_friendly_404(client):
    """A link to an event that does not exist: a 404 page that leads back to the events."""
    r = client.get("/events/999999")
    assert r.status_code == 404
    assert b"We could not find that event" in r.data
    assert b'href="/"' in r.data
