"""The confirmation e-mail goes out exactly once: under a task delivered twice, a worker
killed in the middle of the SMTP conversation, and an SMTP server refusing for a while.
Real workers, beat, MariaDB, Redis and a real SMTP server (aiosmtpd)."""
import re
import time
import uuid

from celery import Celery

from tests.checkout_helpers import rows, scalar
from tests.conftest import REDIS_URL
from tests.tickets_helpers import Organizer, SmtpServer, buy, wait_for


def _celery(proc_env):
    app = Celery(broker=REDIS_URL)
    app.conf.task_default_queue = proc_env["CELERY_QUEUE"]
    return app


def _send_task(proc_env, outbox_id):
    _celery(proc_env).send_task("workers.after_sale.send_mail", args=[outbox_id],
                                queue=proc_env["CELERY_QUEUE"])


def _outbox(db_url):
    """The order e-mails' outbox rows (sign-ups add address verification e-mails)."""
    return rows(db_url, "SELECT id, status, attempts, message_id FROM mail_outbox"
                        " WHERE order_id IS NOT NULL ORDER BY id")


def _signups_mailed(db_url):
    """Wait until the sign-ups' verification e-mails are out, so that only the order's is left."""
    wait_for(lambda: scalar(db_url, "SELECT COUNT(*) FROM mail_outbox"
                                    " WHERE order_id IS NULL AND status != 'sent'") == 0, 30)


def test_a_task_delivered_several_times_sends_one_email(cluster, clean_db, buyers, proc_env):
    smtp = SmtpServer().start()
    smtp.inbox.stall_rcpt_s = 1.5  # deliveries overlap in the middle of the conversation
    try:
        env = {"SMTP_URL": smtp.url}
        cluster.worker(concurrency=2, extra_env=env)
        cluster.worker(concurrency=2, extra_env=env)
        web = cluster.web(extra_env=env)
        org = Organizer(web.url, clean_db, rows=1, per_row=4)
        buyer = buyers(web.url)
        seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
        order_id = buy(buyer, org.event_id, seats[:2])
        outbox_id = scalar(clean_db, "SELECT id FROM mail_outbox WHERE order_id = :o", o=order_id)
        for _ in range(4):  # the same task again, as a broker redelivering it would
            _send_task(proc_env, outbox_id)
        wait_for(lambda: _outbox(clean_db)[0]["status"] == "sent", 30)
        time.sleep(4)  # every duplicate has run by now
        assert len(smtp.inbox.orders()) == 1
        assert _outbox(clean_db)[0]["attempts"] == 1
    finally:
        smtp.stop()


def test_a_worker_killed_mid_send_leaves_one_email(cluster, clean_db, buyers, proc_env):
    smtp = SmtpServer().start()
    try:
        env = {"SMTP_URL": smtp.url, "MAIL_LEASE_SECONDS": "4",
               "MAIL_RETRY_INTERVAL_SECONDS": "1"}
        doomed = cluster.worker(concurrency=1, extra_env=env)
        web = cluster.web(extra_env=env)
        org = Organizer(web.url, clean_db, rows=1, per_row=4)
        buyer = buyers(web.url)
        seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
        _signups_mailed(clean_db)
        rcpts_before = smtp.inbox.rcpts
        smtp.inbox.stall_rcpt_s = 60  # the worker hangs in the SMTP conversation
        order_id = buy(buyer, org.event_id, seats[:1])
        wait_for(lambda: smtp.inbox.rcpts >= 1 + rcpts_before, 20)  # mid-conversation now
        doomed.kill9()
        assert _outbox(clean_db)[0]["status"] == "pending"
        smtp.inbox.stall_rcpt_s = 0
        cluster.worker(concurrency=1, extra_env=env)
        cluster.beat(extra_env=env)
        wait_for(lambda: _outbox(clean_db)[0]["status"] == "sent", 60)
        time.sleep(3)
        mails = smtp.inbox.orders()
        assert len(mails) == 1
        row = _outbox(clean_db)[0]
        assert row["attempts"] == 2
        assert mails[0]["Message-ID"].strip() == row["message_id"]
        assert scalar(clean_db, "SELECT order_id FROM mail_outbox WHERE order_id IS NOT NULL") \
            == order_id
    finally:
        smtp.stop()


def test_refusals_are_retried_with_back_off_until_the_server_takes_it(cluster, clean_db,
                                                                      buyers):
    smtp = SmtpServer().start()
    try:
        env = {"SMTP_URL": smtp.url, "MAIL_BACKOFF_FIRST_SECONDS": "1",
               "MAIL_RETRY_INTERVAL_SECONDS": "1"}
        cluster.worker(concurrency=1, extra_env=env)
        cluster.beat(extra_env=env)
        web = cluster.web(extra_env=env)
        org = Organizer(web.url, clean_db, rows=1, per_row=4)
        buyer = buyers(web.url)
        seats = [s["id"] for s in buyer.join(org.event_id)["seats"]]
        _signups_mailed(clean_db)
        smtp.inbox.refuse = True
        buy(buyer, org.event_id, seats[:1])
        wait_for(lambda: _outbox(clean_db)[0]["attempts"] >= 2, 30)
        row = rows(clean_db, "SELECT status, last_error, next_attempt_at, created_at"
                             " FROM mail_outbox WHERE order_id IS NOT NULL")[0]
        assert row["status"] == "pending" and "451" in row["last_error"]
        assert row["next_attempt_at"] > row["created_at"]
        assert smtp.inbox.orders() == []
        smtp.inbox.refuse = False
        wait_for(lambda: _outbox(clean_db)[0]["status"] == "sent", 60)
        time.sleep(2)
        assert len(smtp.inbox.orders()) == 1
    finally:
        smtp.stop()


def _mail_tasks(log):
    """{task name[id]: [outbox ids it sent]} from a worker's log with one child (its lines
    in order: each "mail N: sent", then its task's "succeeded"); under True, the ids
    sent by a task that has not logged its end yet."""
    tasks, sent = {}, []
    for line in log.splitlines():
        found = re.search(r"workers\.after_sale: mail (\d+): sent$", line)
        if found:
            sent.append(int(found.group(1)))
            continue
        done = re.search(r"Task (workers\.after_sale\.send_mails?\[[0-9a-f-]+\]) succeeded", line)
        if done:
            tasks[done.group(1)], sent = sent, []
    if sent:
        tasks[True] = sent
    return tasks


def test_a_payment_rounds_confirmations_go_to_the_mail_worker_in_one_message(
        app, cluster, clean_db, make_users, proc_env):
    """Three payments decided in one round: their three e-mails go to the after-sale queue
    as one send_mails message (one each cost the sale's worker a publish per order), and
    each is sent once."""
    from tests.test_payment_batches import _holds, _item
    smtp = SmtpServer().start()
    try:
        # Queues of this test's own: nothing an earlier test left in the shared ones.
        queue = f"{proc_env['CELERY_QUEUE']}-{uuid.uuid4().hex[:8]}"
        worker = cluster.worker(concurrency=1, extra_env={"SMTP_URL": smtp.url,
                                                          "CELERY_QUEUE": queue})
        users = [uid for uid, _t in make_users(3)]
        items = [_item(app, uid, hold_id) for uid, hold_id in zip(users, _holds(app, users))]
        _celery(proc_env).send_task("workers.tasks.pay_many", args=[items], queue=queue)
        wait_for(lambda: [r["status"] for r in _outbox(clean_db)] == ["sent"] * 3, 60)
        ours = {row["id"] for row in _outbox(clean_db)}

        def by_task():   # the finished tasks that sent ours (the rows are marked first)
            return {task: ids for task, ids in _mail_tasks(worker.log_path.read_text()).items()
                    if task is not True and ours & set(ids)}
        wait_for(lambda: ours <= {i for ids in by_task().values() for i in ids}, 30)
        sent_by = by_task()
        assert len(sent_by) == 1, sent_by                      # one message for the three
        [(task, ids)] = sent_by.items()
        assert task.startswith("workers.after_sale.send_mails[") and sorted(ids) == sorted(ours)
        assert len(smtp.inbox.orders()) == 3
    finally:
        smtp.stop()


def test_a_mail_refused_for_good_is_failed_and_reported_by_the_audit(app):
    """A 5xx answer marks the row failed (no retry), and the audit lists it."""
    from booking import mail
    from booking.audit import run_audit
    from booking.extensions import db
    from booking.mail_transport import make_transport
    from booking.models import User

    smtp = SmtpServer().start()

    async def refuse(server, session, envelope):
        return "550 No such user here"
    smtp.inbox.handle_DATA = refuse
    try:
        app.config["SMTP_URL"] = smtp.url
        with app.app_context():
            user = User(email="gone@example.test", name="", password_hash="x")
            db.session.add(user)
            db.session.flush()
            row = mail.queue_mail(db.session, kind="verify_email", dedupe_key="verify:test",
                                  to_addr=user.email, user_id=user.id,
                                  params={"token": "t", "hours": 72})
            db.session.commit()
            assert mail.deliver_mail(row.id, make_transport(app.config)) == "failed"
            assert mail.deliver_mail(row.id, make_transport(app.config)) == "skipped"
            db.session.expire_all()
            problems = run_audit(db.session)["problems"]
            assert [(p["kind"], p["outbox_id"], p["status"]) for p in problems] == [
                ("mail_not_sent", row.id, "failed")]
            assert "550" in problems[0]["last_error"]
    finally:
        smtp.stop()
