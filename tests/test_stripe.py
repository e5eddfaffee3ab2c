"""PAYMENT_PROCESSOR=stripe against localstripe, a real server speaking Stripe's API.

The app runs in-process on MariaDB (tasks eager, as in the embedded mode) and
talks to localstripe over HTTP with the official stripe library; nothing of
Stripe is mocked. Webhooks are delivered by localstripe itself to the app
served over HTTP, and replayed (signed as Stripe signs them) twice and out of
order. The paths where a worker dies are forced deterministically: the
charging half of the pay task runs, the finishing half does not.
"""
import threading
import time
import uuid

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from booking import checkout, holds, settlement
from booking.audit import run_audit
from booking.extensions import db, socketio
from booking.models import Hold, Order, Payment, Seat, StripeEvent, StripeIntent
from booking.payments import ProcessorUnavailable
from tests.conftest import SECRET
from tests.harness import free_port, wait_until
from tests.stripe_server import (DECLINED, GOOD, THREE_DS, THREE_DS_DECLINED, LocalStripe,
                                 SlowProxy, signed, stripe_config)
from tests.test_holds_idempotency import _event


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    server = LocalStripe(tmp_path_factory.mktemp("localstripe"))
    yield server
    server.stop()


def _make_app(db_url, server, **extra):
    from booking import create_app
    return create_app({"SQLALCHEMY_DATABASE_URI": db_url, "REDIS_URL": None,
                       "SECRET_KEY": SECRET, "SOCKETIO_ASYNC_MODE": "threading",
                       "TESTING": True, "PAYMENT_TIMEOUT_SECONDS": 5,
                       **stripe_config(server, **extra)})


@pytest.fixture
def app(clean_db, localstripe, request):
    """The app with PAYMENT_PROCESSOR=stripe, pointed at localstripe."""
    marker = request.node.get_closest_marker("app_config")
    app = _make_app(clean_db, localstripe, **(marker.kwargs if marker else {}))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def served(app, localstripe):
    """The app over HTTP (its webhook endpoint), with localstripe's webhooks sent to it."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/webhooks/stripe"
    localstripe.send_webhooks_to(url)
    yield url
    server.shutdown()


def _hold(app, uid, seats=1):
    event_id, seat_ids = _event(app, seats=max(seats, 2))
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": uid, "request_id": uuid.uuid4().hex,
             "event_id": event_id, "seat_ids": seat_ids[:seats]}],
            app.extensions["boxoffice"].settings)
        db.session.commit()
    return out.results[0][3]["hold_id"], seat_ids[:seats]


def _pay_item(app, uid, hold_id, token_id, key=None):
    """What the socket handler hands the worker: the token's id, brand and last 4, never a card."""
    with app.app_context():
        card = app.extensions["boxoffice"].processor.accept_token(token_id)
    return {"kind": "pay", "user_id": uid, "request_id": uuid.uuid4().hex, "hold_id": hold_id,
            "idempotency_key": key or uuid.uuid4().hex, "card_token": card.token,
            "brand": card.brand, "last4": card.last4}


def _pay(app, item):
    from workers.tasks import pay
    with app.app_context():
        pay.apply(args=[item], throw=True)


def _payment(app, item):
    with app.app_context():
        key = checkout.processor_key(item["user_id"], item["idempotency_key"])
        return db.session.scalar(sa.select(Payment).where(Payment.processor_key == key))


def _count(app, model, *where):
    with app.app_context():
        n = db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))
        db.session.rollback()
        return n


def _audit(app):
    with app.app_context():
        report = run_audit(db.session, processor=app.extensions["boxoffice"].processor)
        db.session.rollback()
        return report


def _intent(localstripe, app, item):
    with app.app_context():
        key = checkout.processor_key(item["user_id"], item["idempotency_key"])
        intent_id = db.session.scalar(sa.select(StripeIntent.intent_id)
                                      .where(StripeIntent.processor_key == key))
    return localstripe.api("GET", f"/v1/payment_intents/{intent_id}")


def _overdue(app, seconds=3600):
    with app.app_context():
        db.session.execute(sa.update(Payment).values(
            created_at=sa.func.timestampadd(sa.text("SECOND"), -seconds, Payment.created_at),
            updated_at=sa.func.timestampadd(sa.text("SECOND"), -seconds, Payment.updated_at)))
        db.session.commit()


def _reconcile(app):
    from workers.tasks import reconcile_payments
    with app.app_context():
        reconcile_payments.apply(throw=True)


def test_paid_order_with_metadata_naming_the_hold(app, make_users, localstripe):
    (uid, _tok), = make_users(1)
    hold_id, seats = _hold(app, uid, seats=2)
    item = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    assert (item["brand"], item["last4"]) == ("visa", "4242")
    _pay(app, item)
    payment = _payment(app, item)
    assert payment.status == "captured" and payment.order_id is not None
    assert payment.reference.startswith("pi_")
    intent = _intent(localstripe, app, item)
    assert intent["status"] == "succeeded"
    assert intent["amount"] == payment.amount_cents == 2000
    assert intent["metadata"]["hold_id"] == str(hold_id)
    assert intent["metadata"]["payment_key"] == payment.processor_key
    assert _count(app, Seat, Seat.id.in_(seats), Seat.status == "sold") == 2
    # The same pay again (a redelivered task): no second intent, no second order.
    _pay(app, dict(item, request_id=uuid.uuid4().hex))
    assert _count(app, Order) == 1 and _count(app, StripeIntent) == 1
    assert _audit(app)["problems"] == []


def test_declined_card_gives_the_hold_back(app, make_users, localstripe):
    (uid, _tok), = make_users(1)
    hold_id, seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(DECLINED))
    _pay(app, item)
    payment = _payment(app, item)
    assert (payment.status, payment.decline_reason) == ("declined", "card_declined")
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "held"
    assert _intent(localstripe, app, item)["status"] == "requires_payment_method"
    assert _count(app, Order) == 0
    # Another card on the same hold (a new attempt, a new key) pays.
    good = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    _pay(app, good)
    assert _payment(app, good).status == "captured"
    assert _audit(app)["problems"] == []


def test_a_token_from_elsewhere_is_refused_in_the_ack(app, make_users, localstripe):
    (uid, tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    sock = socketio.test_client(app, auth={"token": tok})
    ack = sock.emit("pay", {"request_id": "r1", "hold_id": hold_id, "idempotency_key": "k1",
                            "payment_token": "tok_doesnotexist"}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_request"
    ack = sock.emit("pay", {"request_id": "r2", "hold_id": hold_id, "idempotency_key": "k2",
                            "card": {"number": GOOD, "exp_month": 12, "exp_year": 2031,
                                     "cvc": "123", "name": "T"}}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_request", \
        "a card number is never taken when Stripe.js should have tokenized it"
    ack = sock.emit("confirm_payment", {"request_id": "r3", "hold_id": hold_id}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_request"
    ack = sock.emit("confirm_payment", {"request_id": "r4", "hold_id": hold_id,
                                        "idempotency_key": "never-paid"}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "not_found"
    assert _count(app, Payment) == 0
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "held"


def test_three_d_secure_keeps_the_hold_paying_until_the_buyer_confirms(
        app, make_users, localstripe):
    (uid, tok), = make_users(1)
    hold_id, seats = _hold(app, uid)
    sock = socketio.test_client(app, auth={"token": tok})
    item = _pay_item(app, uid, hold_id, localstripe.token(THREE_DS))
    _pay(app, item)
    payment = _payment(app, item)
    assert payment.status == "pending"
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "paying"
        # The sweep leaves a paying hold alone, even past its expiry.
        later = db.session.get(Hold, hold_id).expires_at
        holds.release_expired(db.session, now=later)
        db.session.commit()
        assert db.session.get(Hold, hold_id).status == "paying"
    actions = [m["args"][0] for m in sock.get_received() if m["name"] == "payment_action"]
    assert actions and actions[0]["request_id"] == item["request_id"]
    secret = actions[0]["client_secret"]
    intent_id = secret.split("_secret_")[0]
    localstripe.authenticate(intent_id, secret, success=True)
    ack = sock.emit("confirm_payment", {"request_id": "c1", "hold_id": hold_id,
                                        "idempotency_key": item["idempotency_key"]},
                    callback=True)
    assert ack["ok"], ack
    wait_until(lambda: _payment(app, item).status == "captured", 15, "order after 3-D Secure")
    results = [m["args"][0] for m in sock.get_received() if m["name"] == "payment_result"]
    wait_until(lambda: results or results.extend(
        m["args"][0] for m in sock.get_received() if m["name"] == "payment_result"), 10,
        "payment_result")
    assert results[0]["ok"] and results[0]["request_id"] == item["request_id"]
    assert _count(app, Order) == 1
    assert _audit(app)["problems"] == []


@pytest.mark.parametrize("number, passes, reason", [
    (THREE_DS, False, "authentication_failed"),     # the buyer fails the challenge
    (THREE_DS_DECLINED, True, "card_declined"),     # passes it; the bank declines after
])
def test_three_d_secure_failed_is_a_decline(app, make_users, localstripe, number, passes,
                                            reason):
    (uid, _tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(number))
    _pay(app, item)
    intent = _intent(localstripe, app, item)
    try:
        localstripe.authenticate(intent["id"], intent["client_secret"], success=passes)
    except requests.HTTPError as err:
        assert err.response.status_code == 402   # what Stripe.js shows the buyer
    with app.app_context():
        assert settlement.settle_key(app.extensions["boxoffice"], _payment(app, item)
                                     .processor_key, 5) == "declined"
    payment = _payment(app, item)
    assert (payment.status, payment.decline_reason) == ("declined", reason)
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "held"


@pytest.mark.app_config(PAYMENT_ACTION_TIMEOUT_SECONDS=60)
def test_abandoned_challenge_is_cancelled_at_stripe_and_the_seats_released(
        app, make_users, localstripe):
    (uid, _tok), = make_users(1)
    hold_id, seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(THREE_DS))
    _pay(app, item)
    _overdue(app, seconds=30)      # past the processor timeout, not past the bound
    _reconcile(app)
    assert _payment(app, item).status == "pending", "a challenge in progress is left alone"
    assert _intent(localstripe, app, item)["status"] == "requires_action"
    _overdue(app, seconds=3600)    # past the bound
    _reconcile(app)
    assert _intent(localstripe, app, item)["status"] == "canceled"
    assert _payment(app, item).status == "failed"
    with app.app_context():
        hold = db.session.get(Hold, hold_id)
        assert hold.status == "held"
        holds.release_expired(db.session, now=hold.expires_at)
        db.session.commit()
        assert db.session.get(Hold, hold_id).status == "expired"
        assert db.session.get(Seat, seats[0]).status == "available"
    assert _count(app, Order) == 0
    assert _audit(app)["problems"] == []


def test_webhook_before_and_after_the_client_twice_and_out_of_order_makes_one_order(
        app, make_users, localstripe, served):
    (uid, tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(THREE_DS))
    _pay(app, item)
    intent = _intent(localstripe, app, item)
    localstripe.authenticate(intent["id"], intent["client_secret"], success=True)
    # localstripe delivers payment_intent.succeeded itself, about a second later,
    # before the browser's confirmation comes.
    # The webhook settles, then records the event in its own transaction (applying is
    # idempotent, so one lost in between is applied again when Stripe re-sends it).
    wait_until(lambda: _payment(app, item).status == "captured"
               and _count(app, StripeEvent) >= 1, 20, "the webhook's order, event recorded")
    # Then the browser's confirmation, and the same event again: nothing changes.
    sock = socketio.test_client(app, auth={"token": tok})
    ack = sock.emit("confirm_payment", {"request_id": "c1", "hold_id": hold_id,
                                        "idempotency_key": item["idempotency_key"]},
                    callback=True)
    assert ack["ok"], ack
    (succeeded,) = localstripe.events(intent["id"], "payment_intent.succeeded")
    for _ in range(2):
        body, headers = signed(succeeded)
        r = requests.post(served, data=body, headers=headers, timeout=10)
        assert r.status_code == 200 and r.json()["duplicate"] is True
    time.sleep(1)
    assert _count(app, Order) == 1
    assert _audit(app)["problems"] == []


def test_webhook_after_the_client_and_a_late_failure_event_change_nothing(
        app, make_users, localstripe, served):
    (uid, _tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    first = _pay_item(app, uid, hold_id, localstripe.token(DECLINED))
    _pay(app, first)                            # declined: payment_failed is sent
    second = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    _pay(app, second)                           # the client's own answer makes the order
    assert _payment(app, second).status == "captured"
    intent = _intent(localstripe, app, second)
    wait_until(lambda: localstripe.events(intent["id"], "payment_intent.succeeded"), 10,
               "succeeded event")
    # Out of order: the succeeded event, then a (forged-order) failed event for the
    # same intent, as if delayed; and the first attempt's failure after both.
    succeeded = localstripe.events(intent["id"], "payment_intent.succeeded")[0]
    failed = dict(succeeded, id="evt_" + uuid.uuid4().hex[:14],
                  type="payment_intent.payment_failed")
    earlier = localstripe.events(_intent(localstripe, app, first)["id"],
                                 "payment_intent.payment_failed")[0]
    for event in (failed, succeeded, earlier, failed):
        body, headers = signed(event)
        assert requests.post(served, data=body, headers=headers, timeout=10).status_code == 200
    assert _payment(app, second).status == "captured"
    assert _payment(app, first).status == "declined"
    assert _count(app, Order) == 1
    assert _audit(app)["problems"] == []


def test_webhook_with_a_bad_signature_is_refused_and_changes_nothing(
        app, make_users, localstripe, served):
    (uid, _tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(THREE_DS))
    _pay(app, item)
    intent = _intent(localstripe, app, item)
    forged = {"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded",
              "created": int(time.time()), "data": {"object": intent}}
    body, headers = signed(forged, secret="whsec_someone_else")
    r = requests.post(served, data=body, headers=headers, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = requests.post(served, data=body, timeout=10)
    assert r.status_code == 422
    # (Other tests' events, which localstripe delivers a second late, may be recorded.)
    assert _payment(app, item).status == "pending"
    assert _count(app, StripeEvent, StripeEvent.id == "evt_forged") == 0


def test_worker_killed_after_stripes_success_reconciliation_makes_the_order(
        app, make_users, localstripe):
    (uid, _tok), = make_users(1)
    hold_id, seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    rt = app.extensions["boxoffice"]
    with app.app_context():
        start = checkout.begin_payment(db.session, item, "stripe")
        db.session.commit()
        charge = rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                                     currency=start.currency, card_token=item["card_token"],
                                     timeout_s=5, metadata={"hold_id": hold_id})
    assert charge.status == "captured"
    # The worker died here: Stripe has the money, we have a pending payment.
    _overdue(app)
    _reconcile(app)
    _reconcile(app)
    payment = _payment(app, item)
    assert payment.status == "captured" and payment.order_id is not None
    assert _count(app, Order) == 1
    assert _audit(app)["problems"] == []


def test_worker_killed_and_the_hold_lost_meanwhile_reconciliation_refunds(
        app, make_users, localstripe):
    (uid, _tok), = make_users(1)
    hold_id, seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    rt = app.extensions["boxoffice"]
    with app.app_context():
        start = checkout.begin_payment(db.session, item, "stripe")
        db.session.commit()
        # Reconciliation found no charge yet and gave the hold back; it expired.
        from workers.tasks import _finish_payment
        _finish_payment(start.payment_id, None)
        hold = db.session.get(Hold, hold_id)
        holds.release_expired(db.session, now=hold.expires_at)
        db.session.commit()
        # The charge lands after all (a worker that died after confirming).
        charge = rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                                     currency=start.currency, card_token=item["card_token"],
                                     timeout_s=5)
        assert charge.status == "captured"
        _finish_payment(start.payment_id, charge)
    assert _payment(app, item).status == "refunded"
    charge = _intent_charge(localstripe, app, item)
    assert charge["amount_refunded"] == charge["amount"]
    assert _count(app, Order) == 0
    assert _audit(app)["problems"] == []


def _intent_charge(localstripe, app, item):
    intent = _intent(localstripe, app, item)
    return localstripe.api("GET", f"/v1/charges/{intent['latest_charge']['id']}")


def test_refund_that_stripe_answers_slowly_is_made_once(
        clean_db, localstripe, make_users, app):
    """Stripe makes the refund but its answer comes after our timeout: asked again under
    the same refund key, the refund is found, not made twice."""
    (uid, _tok), = make_users(1)
    hold_id, _seats = _hold(app, uid, seats=2)
    item = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    _pay(app, item)
    payment = _payment(app, item)
    proxy = SlowProxy(localstripe.port, delay=3.0)
    slow = _make_app(clean_db, localstripe, STRIPE_API_BASE=proxy.url,
                     PAYMENT_TIMEOUT_SECONDS=1.5)
    try:
        with slow.app_context():
            processor = slow.extensions["boxoffice"].processor
            with pytest.raises(ProcessorUnavailable):
                processor.refund_part(key=payment.processor_key, refund_key="r-1",
                                      amount_cents=1000, timeout_s=1.5)
            proxy.delay = 0
            answer = processor.refund_part(key=payment.processor_key, refund_key="r-1",
                                           amount_cents=1000, timeout_s=1.5)
            assert answer.status == "succeeded" and answer.reference.startswith("re_")
            again = processor.refund_part(key=payment.processor_key, refund_key="r-1",
                                          amount_cents=1000, timeout_s=1.5)
            assert again.reference == answer.reference
            too_much = processor.refund_part(key=payment.processor_key, refund_key="r-2",
                                             amount_cents=1001, timeout_s=1.5)
            assert (too_much.status, too_much.reason) == ("failed", "exceeds_captured")
            rest = processor.refund_part(key=payment.processor_key, refund_key="r-3",
                                         amount_cents=1000, timeout_s=1.5)
            assert rest.status == "succeeded"
    finally:
        proxy.close()
        with slow.app_context():
            db.engine.dispose()
    charge = _intent_charge(localstripe, app, item)
    assert charge["amount_refunded"] == 2000
    refunds = localstripe.api("GET", "/v1/refunds", params={"charge": charge["id"]})["data"]
    assert sorted(r["amount"] for r in refunds) == [1000, 1000]


def test_slow_refund_of_an_orphan_capture_is_retried_by_reconciliation_once(
        clean_db, localstripe, make_users, app):
    (uid, _tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    proxy = SlowProxy(localstripe.port)
    slow = _make_app(clean_db, localstripe, STRIPE_API_BASE=proxy.url,
                     PAYMENT_TIMEOUT_SECONDS=1.5)
    try:
        with slow.app_context():
            rt = slow.extensions["boxoffice"]
            start = checkout.begin_payment(db.session, item, "stripe")
            db.session.commit()
            from workers.tasks import _finish_payment
            _finish_payment(start.payment_id, None)
            hold = db.session.get(Hold, hold_id)
            holds.release_expired(db.session, now=hold.expires_at)
            db.session.commit()
            charge = rt.processor.charge(key=start.processor_key,
                                         amount_cents=start.amount_cents,
                                         currency=start.currency,
                                         card_token=item["card_token"], timeout_s=1.5)
            proxy.delay = 2.5              # the refund is made; its answer comes too late
            _finish_payment(start.payment_id, charge)
            assert db.session.get(Payment, start.payment_id).status == "captured"
            proxy.delay = 0
            from workers.tasks import reconcile_payments
            reconcile_payments.apply(throw=True)
            db.session.expire_all()
            assert db.session.get(Payment, start.payment_id).status == "refunded"
    finally:
        proxy.close()
        with slow.app_context():
            db.engine.dispose()
    charge = _intent_charge(localstripe, app, item)
    refunds = localstripe.api("GET", "/v1/refunds", params={"charge": charge["id"]})["data"]
    assert [r["amount"] for r in refunds] == [charge["amount"]], "refunded exactly once"
    assert _audit(app)["problems"] == []


def _organized_order(app, localstripe, buyer_uid, admin_uid, seats=3):
    """A paid order of `seats` seats at 1000 cents each, for an event of an organizer whose
    admin is admin_uid: (order_id, seat ids, pay item)."""
    from datetime import datetime
    from booking import catalog, organizers
    from booking.models import User
    with app.app_context():
        email = db.session.get(User, admin_uid).email
        org = organizers.create_organizer(db.session, "Org " + uuid.uuid4().hex[:8], email)
        event = catalog.create_event(db.session, name="E", venue="V",
                                     starts_at=datetime(2030, 1, 1),
                                     sections=[("Main", 1, seats + 1, 1000)],
                                     organizer_id=org.id)
        db.session.commit()
        seat_ids = db.session.scalars(sa.select(Seat.id).where(Seat.event_id == event.id)
                                      .order_by(Seat.id)).all()[:seats]
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": buyer_uid, "request_id": uuid.uuid4().hex,
             "event_id": event.id, "seat_ids": seat_ids}], app.extensions["boxoffice"].settings)
        db.session.commit()
    item = _pay_item(app, buyer_uid, out.results[0][3]["hold_id"], localstripe.token(GOOD))
    _pay(app, item)
    order_id = _payment(app, item).order_id
    assert order_id is not None
    return order_id, seat_ids, item


def _charge_refunded(localstripe, app, item, served):
    """Deliver charge.refunded for the item's charge as Stripe signs it; the answer."""
    charge = _intent_charge(localstripe, app, item)
    event = {"id": "evt_" + uuid.uuid4().hex[:14], "object": "event",
             "type": "charge.refunded", "created": int(time.time()),
             "data": {"object": charge}}
    body, headers = signed(event)
    answers = [requests.post(served, data=body, headers=headers, timeout=10) for _ in range(2)]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert answers[1].json().get("duplicate") is True
    return answers[0].json()


def _order_state(app, order_id):
    from booking.models import Refund, Ticket
    with app.app_context():
        order = db.session.get(Order, order_id)
        tickets = {t.seat_id: t.status for t in db.session.scalars(
            sa.select(Ticket).where(Ticket.order_id == order_id))}
        refunds = [(r.amount_cents, r.status, r.requested_by) for r in db.session.scalars(
            sa.select(Refund).where(Refund.order_id == order_id).order_by(Refund.id))]
        seats = {s.id: s.status for s in db.session.scalars(
            sa.select(Seat).where(Seat.id.in_(tickets)))}
        db.session.rollback()
        return order.status, tickets, refunds, seats


def test_dashboard_refunds_are_recorded_once_and_void_their_tickets(
        app, make_users, localstripe, served):
    """Refunds made in Stripe's dashboard, reported by charge.refunded (each event
    delivered twice), become refund records through the one refund module: the tickets
    their amount covers turn void and their seats available, once. A refund made here,
    echoed back by Stripe, changes nothing. The audit stays clean throughout."""
    from booking import refunds
    from workers.tasks import send
    (buyer, _t), (admin, _a) = make_users(2)
    order_id, seats, item = _organized_order(app, localstripe, buyer, admin, seats=3)
    intent = _intent(localstripe, app, item)

    # A partial refund of one seat's price in the dashboard.
    localstripe.api("POST", "/v1/refunds", data={"payment_intent": intent["id"],
                                                 "amount": 1000})
    assert _charge_refunded(localstripe, app, item, served)["outcome"] == "captured"
    status, tickets, made, seat_status = _order_state(app, order_id)
    assert status == "partially_refunded"
    assert made == [(1000, "succeeded", None)]
    assert tickets == {seats[0]: "void", seats[1]: "valid", seats[2]: "valid"}
    assert seat_status[seats[0]] == "available" and seat_status[seats[1]] == "sold"
    assert _audit(app)["problems"] == []

    # A refund made here (the back office's path), then Stripe's event about it.
    with app.app_context():
        refunds.refund_order(app.extensions["boxoffice"], admin, order_id, [seats[1]],
                             "ours-1", send)
    _charge_refunded(localstripe, app, item, served)
    status, tickets, made, _ = _order_state(app, order_id)
    assert made == [(1000, "succeeded", None), (1000, "succeeded", admin)], made
    assert tickets[seats[1]] == "void" and tickets[seats[2]] == "valid"
    assert _audit(app)["problems"] == []

    # The rest refunded in the dashboard: the order is refunded, every ticket void.
    localstripe.api("POST", "/v1/refunds", data={"payment_intent": intent["id"],
                                                 "amount": 1000})
    assert _charge_refunded(localstripe, app, item, served)["outcome"] == "refunded"
    status, tickets, made, seat_status = _order_state(app, order_id)
    assert status == "refunded" and set(tickets.values()) == {"void"}
    assert len(made) == 3 and sum(m[0] for m in made) == 3000
    assert set(seat_status.values()) == {"available"}
    charge = _intent_charge(localstripe, app, item)
    assert charge["amount_refunded"] == 3000
    report = _audit(app)
    assert report["problems"] == [], report
    [ev] = report["events"]
    assert ev["revenue_cents"] == 0 and ev["refunded_cents"] == 3000


def test_organizer_refund_that_stripe_answers_slowly_is_settled_once(
        clean_db, localstripe, make_users, app):
    """The back office's refund of one seat, with Stripe answering after our timeout: the
    refund stays pending (tickets reserved for it, nothing voided), reconciliation asks
    again under the same refund key, finds the refund Stripe made and finishes it; Stripe
    holds exactly one refund and the audit is clean."""
    from datetime import timedelta
    from booking import refunds
    from booking.models import Refund, utcnow
    from workers.tasks import send
    (buyer, _t), (admin, _a) = make_users(2)
    order_id, seats, item = _organized_order(app, localstripe, buyer, admin, seats=2)
    proxy = SlowProxy(localstripe.port, delay=3.0)
    slow = _make_app(clean_db, localstripe, STRIPE_API_BASE=proxy.url,
                     PAYMENT_TIMEOUT_SECONDS=1.5)
    try:
        with slow.app_context():
            rt = slow.extensions["boxoffice"]
            refund_id = refunds.refund_order(rt, admin, order_id, [seats[0]], "slow-1", send)
            assert db.session.get(Refund, refund_id).status == "pending"
            status, tickets, _made, _ = _order_state(app, order_id)
            assert status == "paid" and tickets[seats[0]] == "valid"
            proxy.delay = 0
            refunds.reconcile_refunds(rt, send, now=utcnow() + timedelta(hours=1))
            refunds.reconcile_refunds(rt, send, now=utcnow() + timedelta(hours=1))
            db.session.expire_all()
            assert db.session.get(Refund, refund_id).status == "succeeded"
    finally:
        proxy.close()
        with slow.app_context():
            db.engine.dispose()
    status, tickets, made, _ = _order_state(app, order_id)
    assert status == "partially_refunded" and tickets[seats[0]] == "void"
    assert made == [(1000, "succeeded", admin)]
    charge = _intent_charge(localstripe, app, item)
    found = localstripe.api("GET", "/v1/refunds", params={"charge": charge["id"]})["data"]
    assert [r["amount"] for r in found] == [1000], "refunded exactly once"
    assert _audit(app)["problems"] == []


def test_a_refund_matching_no_tickets_is_recorded_and_reported(
        app, make_users, localstripe, served):
    """A goodwill refund of an amount no set of tickets adds up to: the money given back is
    recorded (revenue drops by it), no ticket is voided, and the audit says so in words."""
    (buyer, _t), (admin, _a) = make_users(2)
    order_id, seats, item = _organized_order(app, localstripe, buyer, admin, seats=2)
    intent = _intent(localstripe, app, item)
    localstripe.api("POST", "/v1/refunds", data={"payment_intent": intent["id"], "amount": 250})
    _charge_refunded(localstripe, app, item, served)
    status, tickets, made, _ = _order_state(app, order_id)
    assert status == "paid" and set(tickets.values()) == {"valid"}
    assert made == [(250, "succeeded", None)]
    kinds = [p["kind"] for p in _audit(app)["problems"]]
    assert kinds == ["void_tickets_differ_from_refunds"], kinds


def test_tickets_for_an_amount():
    from types import SimpleNamespace as T
    from booking.refunds import _tickets_for_amount
    tickets = [T(id=1, price_cents=6500), T(id=2, price_cents=4500), T(id=3, price_cents=2500)]
    assert [t.id for t in _tickets_for_amount(tickets, 13500)] == [1, 2, 3]
    assert [t.id for t in _tickets_for_amount(tickets, 7000)] == [2, 3]
    assert [t.id for t in _tickets_for_amount(tickets, 4500)] == [2]
    assert _tickets_for_amount(tickets, 1000) is None
    assert _tickets_for_amount([], 100) is None


def test_csp_sources_name_stripe_or_the_local_server(app, localstripe):
    from booking.payments import csp_sources
    assert csp_sources({"PAYMENT_PROCESSOR": "simulated"}) == {}
    assert csp_sources({"PAYMENT_PROCESSOR": "stripe", "STRIPE_JS_URL": "https://js.stripe.com/v3/",
                        "STRIPE_API_BASE": "https://api.stripe.com"}) == {
        "script-src": ["https://js.stripe.com"],
        "frame-src": ["https://js.stripe.com", "https://hooks.stripe.com"],
        "connect-src": ["https://api.stripe.com"]}
    assert csp_sources(app.config) == {"script-src": [localstripe.url],
                                       "frame-src": [localstripe.url],
                                       "connect-src": [localstripe.url]}


def test_confirmation_before_any_charge_leaves_the_payment_pending(app, make_users, localstripe):
    """A confirm_payment that arrives before the worker made the intent (a client that
    jumps ahead) cannot fail the payment: only reconciliation concludes 'no charge'."""
    (uid, tok), = make_users(1)
    hold_id, _seats = _hold(app, uid)
    item = _pay_item(app, uid, hold_id, localstripe.token(GOOD))
    with app.app_context():
        checkout.begin_payment(db.session, item, "stripe")
        db.session.commit()
    sock = socketio.test_client(app, auth={"token": tok})
    ack = sock.emit("confirm_payment", {"request_id": "c1", "hold_id": hold_id,
                                        "idempotency_key": item["idempotency_key"]},
                    callback=True)
    assert ack["ok"], ack
    time.sleep(1)
    assert _payment(app, item).status == "pending"
    _pay(app, item)                        # the worker's turn comes: the payment completes
    assert _payment(app, item).status == "captured"
    assert _audit(app)["problems"] == []
