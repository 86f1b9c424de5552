"""Logging in (issue 16, items 2 and 3): every attempt is counted, per e-mail and per client
address, before the password is checked; unknown e-mails get the same message, the same
cost (one hash check) and the same lock as known ones. Panel and API alike.

The burst runs against a real server, `billhive run` (threads in one process) and
`billhive run --workers 2` (gunicorn processes), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading

import pytest
import requests

from tests.conftest import PASSWORD
from tests.servers import billhive_run

LOCKED = "too many failed logins"
WRONG = "wrong e-mail or password"


@pytest.fixture
def app(make_app):
    return make_app(plugins=[])


@pytest.fixture
def scrypt_runs(monkeypatch):
    """How many scrypt computations the code under test makes (werkzeug calls hashlib's)."""
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def _token(client, email, password, address="127.0.0.1"):
    return client.post(
        "/api/v1/tokens",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_known_unknown_and_deactivated_emails_cost_one_hash_check_each(world, ctx, scrypt_runs):
    from core import users

    client = ctx.test_client()
    second = world.add_user(world.customer_a, "second@example.com")
    users.deactivate(None, second)
    scrypt_runs.clear()
    answers = {}
    for email, password in [
        ("a@example.com", "wrong-password-1"),  # known, wrong password
        ("nobody@example.com", "wrong-password-1"),  # unknown
        ("second@example.com", PASSWORD),  # deactivated, right password
        ("", "wrong-password-1"),  # no e-mail at all
    ]:
        before = len(scrypt_runs)
        resp = _token(client, email, password)
        answers[email] = (resp.status_code, resp.get_json()["message"])
        assert len(scrypt_runs) - before == 1, email
    assert set(answers.values()) == {(422, WRONG)}
    before = len(scrypt_runs)
    assert _token(client, "b@example.com", PASSWORD).status_code == 201
    assert len(scrypt_runs) - before == 1


def test_unknown_emails_are_locked_like_known_ones_and_locked_ones_cost_nothing(
    world, ctx, scrypt_runs
):
    client = ctx.test_client()
    for email in ("a@example.com", "nobody@example.com"):
        for _ in range(5):
            assert _token(client, email, "wrong-password-1").get_json()["message"] == WRONG
        scrypt_runs.clear()
        resp = _token(client, email, PASSWORD)
        assert resp.status_code == 422 and LOCKED in resp.get_json()["message"]
        assert scrypt_runs == []  # refused before any password is checked
    # another e-mail from the same address is not locked by these
    assert _token(client, "b@example.com", PASSWORD).status_code == 201


def test_guesses_from_one_address_lock_that_address_for_every_email(make_app, tmp_path):
    from tests.conftest import World

    app = make_app(plugins=[], LOGIN_MAX_FAILURES_PER_ADDRESS=8)
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        World()
    client = app.test_client()
    for i in range(8):  # eight e-mails, one guess each: no e-mail reaches its own limit
        assert (
            _token(client, f"user{i}@example.com", "wrong-password-1", "10.9.8.7").status_code
            == 422
        )
    resp = _token(client, "a@example.com", PASSWORD, "10.9.8.7")
    assert resp.status_code == 422 and LOCKED in resp.get_json()["message"]
    # the panel shares the count
    resp = client.post(
        "/login",
        data={"email": "a@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert resp.status_code == 401 and LOCKED in resp.get_data(as_text=True)
    # another address is not affected
    assert _token(client, "a@example.com", PASSWORD, "10.9.8.8").status_code == 201


def test_a_success_gives_back_its_attempt_but_never_clears_an_addresss_guesses(make_app):
    from tests.conftest import World

    app = make_app(plugins=[], LOGIN_MAX_FAILURES_PER_ADDRESS=4)
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        World()
    client = app.test_client()
    for _ in range(10):  # the right password, again and again: never a lock
        assert _token(client, "a@example.com", PASSWORD, "10.0.0.1").status_code == 201
    for i in range(3):
        _token(client, f"x{i}@example.com", "wrong-password-1", "10.0.0.1")
    assert _token(client, "a@example.com", PASSWORD, "10.0.0.1").status_code == 201
    _token(client, "x9@example.com", "wrong-password-1", "10.0.0.1")  # the fourth failure
    resp = _token(client, "a@example.com", PASSWORD, "10.0.0.1")
    assert resp.status_code == 422 and LOCKED in resp.get_json()["message"]


# -- the burst against a real server ---------------------------------------------------------


@pytest.fixture(params=[0, 2], ids=["run", "run-workers-2"])
def server(request, app, database_url):
    """`billhive run` (workers=0: one process, a thread per request) or `--workers 2`."""
    with billhive_run(app, database_url, workers=request.param) as (_, base):
        yield base


def _burst(url, payloads) -> list[tuple[int, str]]:
    """Send every payload at once (a barrier releases the threads together)."""
    start = threading.Barrier(len(payloads))
    answers: list = [None] * len(payloads)

    def send(i, payload):
        start.wait()
        resp = requests.post(url, timeout=60, **payload)
        answers[i] = (resp.status_code, resp.text)

    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(payloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


@pytest.mark.slow
def test_24_parallel_guesses_check_at_most_five_and_the_right_one_gets_no_token(world, server):
    url = f"{server}/api/v1/tokens"
    guesses = [{"json": {"email": "b@example.com", "password": f"guess-{i:04d}-xx"}}
               for i in range(24)]  # fmt: skip
    answers = _burst(url, guesses)
    assert all(status == 422 for status, _ in answers), answers
    checked = [text for _, text in answers if WRONG in text]
    locked = [text for _, text in answers if LOCKED in text]
    assert len(checked) <= 5 and len(checked) + len(locked) == 24, answers
    resp = requests.post(url, json={"email": "b@example.com", "password": PASSWORD}, timeout=60)
    assert resp.status_code == 422 and LOCKED in resp.json()["message"]
    assert "token" not in resp.json()
    # the same for an e-mail nobody has: the same answers, the same lock
    answers = _burst(url, [{"json": {"email": "ghost@example.com", "password": f"guess-{i:04d}-xx"}}
                           for i in range(12)])  # fmt: skip
    assert len([t for _, t in answers if WRONG in t]) <= 5
    assert len([t for _, t in answers if LOCKED in t]) >= 7
