"""Hostile input to every endpoint: each gets a short error that names the field, the server stays
up, the next request works, and the server log gets one line per rejection, not a traceback."""
import json
import logging

import pytest

HUGE = 10**30
BIG_TEXT = "1," * 200_000
CASES = {
    "/face": [("x", 1.0), ([], 1.0), ({}, 1.0), ("", 1.0), (HUGE, 1.0), (-HUGE, 1.0), (float("nan"), 1.0),
              (float("inf"), 1.0), ("../etc/passwd", 1.0), ("1\x00", 1.0), (1, "psi"), (1, float("nan")),
              (True, 1.0), (1, 1.0, "../../secret"), (1, 1.0, ["generator"])],
    "/grid": [("x", 4, 4, 1.0), (0, "four", 4, 1.0), (0, 4, float("inf"), 1.0), (-5, 4, 4, 1.0), (HUGE, 2, 2, 1.0),
              (0, -1, 4, 1.0), (None, 4, 4, 1.0), (0, 1000, 4, 1.0), (0, [4], 4, 1.0)],
    "/zip": [(HUGE, 0, 1.0), (-1, 0, 1.0), (1, "../../x", 1.0), (float("nan"), 0, 1.0), ("1000; rm -rf /", 0, 1.0),
             (10, 0, -1.0)],
    "/morph": [("", 4, "gif", 1.0), (BIG_TEXT, 4, "gif", 1.0), ("1-100000", 4, "gif", 1.0),
               ("3,7", float("nan"), "gif", 1.0), ("3,7", 4, "../../x", 1.0), ("3\n7", 4, "gif", 1.0),
               ("3,7", 4, "gif", HUGE), (None, 4, "gif", 1.0), ("3,7", 4, "x" * 1_000_000, 1.0),
               ("3,7", "many", "gif", 1.0)],
}
def _json_ok(args) -> bool:
    try:
        json.dumps(args, allow_nan=False)
        return True
    except ValueError:
        return False


FIELD_WORDS = ("seed", "psi", "rows", "columns", "count", "frames", "format", "model", "seeds", "morph")


@pytest.mark.parametrize("endpoint,args", [(e, a) for e, cases in CASES.items() for a in cases],
                         ids=lambda v: str(v)[:30])
def test_hostile_input_is_refused_and_the_server_survives(served, endpoint, args, caplog):
    client, _, _ = served
    caplog.set_level(logging.INFO, logger="anime_gan.app")
    with pytest.raises(Exception) as info:  # gradio_client raises AppError or a protocol error
        client.predict(*args, api_name=endpoint)
    message = str(info.value)
    assert message and len(message) < 400 and "Traceback" not in message, message[:500]
    if not _json_ok(args):  # NaN and infinity cannot be sent as JSON: the client refuses, the server never sees it
        return
    if len(json.dumps(args)) > 64 * 1024:  # refused before Gradio reads it (demo/admission.py)
        assert "413" in message, message
    else:
        assert any(w in message for w in FIELD_WORDS), message  # says which field is wrong
    assert "Could not preprocess" not in message
    rejected = [r for r in caplog.records if r.name == "anime_gan.app" and r.getMessage().startswith("rejected")]
    assert len(rejected) == 1 and rejected[0].exc_info is None and len(rejected[0].getMessage()) < 400
    big, png, caption = client.predict(5, 1.0, api_name="/face")
    assert caption.startswith("**Seed 5**")


def test_a_visitor_behind_a_proxy_is_known_by_x_forwarded_for(monkeypatch):
    from types import SimpleNamespace

    from core.errors import UserError
    from demo.settings import Settings
    from demo.visitors import client_of

    behind = SimpleNamespace(client=SimpleNamespace(host="10.16.3.80"),
                             headers={"x-forwarded-for": "203.0.113.7, 10.16.3.80"})
    assert client_of(behind) == "10.16.3.80"  # not trusted: the connection's address
    assert client_of(behind, trust=True) == "203.0.113.7"
    direct = SimpleNamespace(client=SimpleNamespace(host="192.0.2.1"), headers={})
    assert client_of(direct, trust=True) == "192.0.2.1"
    for name in ("ANIME_GAN_TRUST_PROXY", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().trust_proxy.on is False
    monkeypatch.setenv("SPACE_ID", "someone/anime-faces")  # set by Hugging Face in every Space
    assert Settings.from_env().trust_proxy.mode == "private"
    monkeypatch.setenv("ANIME_GAN_TRUST_PROXY", "0")
    assert Settings.from_env().trust_proxy.on is False
    monkeypatch.setenv("ANIME_GAN_TRUST_PROXY", "hops=2")
    assert Settings.from_env().trust_proxy.hops == 2
    monkeypatch.setenv("ANIME_GAN_TRUST_PROXY", "maybe")
    with pytest.raises(UserError, match="ANIME_GAN_TRUST_PROXY"):
        Settings.from_env()


def _chunked_post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked (no Content-Length), in 8 KiB chunks."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    conn.request("POST", path, body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def test_a_chunked_body_over_the_limit_gets_413_and_a_log_line(served, caplog):
    """No Content-Length to judge by: the body is counted as it comes and refused like any other."""
    _, _, port = served
    caplog.set_level(logging.INFO, logger="anime_gan.app")
    status, data = _chunked_post(port, "/gradio_api/queue/join", b"[" + b"1," * 100_000 + b"1]")
    assert status == 413 and b"request too large: at most 65536 bytes" in data
    rejected = [r.getMessage() for r in caplog.records if r.name == "anime_gan.app" and r.getMessage().startswith("rejected")]
    assert len(rejected) == 1 and "no Content-Length" in rejected[0]
    # A small chunked body still reaches Gradio whole (it answers the malformed request itself).
    payload = json.dumps({"data": [7, 1.0], "fn_index": 0, "session_hash": "chunked1"}).encode()
    status, data = _chunked_post(port, "/gradio_api/queue/join", payload)
    assert status != 413 and status < 500, (status, data[:200])


def test_a_visitor_over_the_heavy_bound_is_told_why_through_gradio_client(served, caplog):
    """Two zips of one visitor waiting or running: the third is refused with the real reason, the
    same words as the server log, not gradio_client's generic "Queue is full! Please try again."."""
    import time

    from gradio_client.utils import Status

    from demo.jobs import LANE

    client, _, _ = served
    caplog.set_level(logging.INFO, logger="anime_gan.app")
    gate = LANE._sem
    assert gate.acquire(timeout=60)  # the first zip starts and then waits for the slot: two stay in
    try:
        jobs = [client.submit(3, 0, 1.0, api_name="/zip") for _ in range(2)]
        deadline = time.time() + 60
        while time.time() < deadline and any(j.status().code in (Status.STARTING, Status.JOINING_QUEUE) for j in jobs):
            time.sleep(0.1)
        with pytest.raises(Exception) as refused:
            client.predict(3, 0, 1.0, api_name="/zip")
    finally:
        gate.release()
    message = str(refused.value)
    assert ("Busy: at most 2 zips, morphs or large grids at a time from one visitor" in message
            and "Queue is full" not in message)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected a queue request")]
    assert any("at most 2 zips, morphs or large grids at a time from one visitor" in m for m in logged)
    for j in jobs:  # the admitted ones finish once the slot is free
        zip_path, summary = j.result(timeout=120)
        assert "3 distinct of 3" in summary


def test_a_cancel_that_gradio_misses_still_stops_the_zip(served, caplog):
    """Gradio's /cancel stops the tasks it finds, then removes the event from the queue; a zip that
    started between the two kept running to its end. Here the cancel names the event but matches no
    task (as in that race): the zip still stops before its next batch."""
    import time

    import httpx
    from gradio_client.utils import Status

    from demo.jobs import LANE

    client, _, port = served
    caplog.set_level(logging.INFO, logger="anime_gan.app")
    gate = LANE._sem
    assert gate.acquire(timeout=60)  # the zip starts, then waits for the slot
    try:
        job = client.submit(50, 0, 1.0, api_name="/zip")
        deadline = time.time() + 60
        while time.time() < deadline and job.status().code != Status.PROCESSING:
            time.sleep(0.05)
        event_id = job.communicator.event_id
        assert event_id
        r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/cancel",
                       json={"fn_index": 10_000, "session_hash": client.session_hash, "event_id": event_id})
        assert r.status_code == 200
    finally:
        gate.release()
    deadline = time.time() + 60
    while time.time() < deadline and not any("rejected /zip: cancelled" in r.getMessage() for r in caplog.records):
        time.sleep(0.1)
    assert any("rejected /zip: cancelled" in r.getMessage() for r in caplog.records)


def test_job_alive_sees_a_cancel_by_event_id():
    import asyncio
    from types import SimpleNamespace

    from gradio.context import LocalContext

    from demo.jobs import job_alive, watch_cancels

    async def remove_from_queue(event_id):
        return None

    queue = SimpleNamespace(active_jobs=[[SimpleNamespace(_id="E1")], None], remove_from_queue=remove_from_queue)
    blocks = SimpleNamespace(_queue=queue)
    watch_cancels(blocks)
    b, e = LocalContext.blocks.set(blocks), LocalContext.event_id.set("E1")
    try:
        assert job_alive()
        asyncio.run(queue.remove_from_queue("E1"))
        assert not job_alive()  # still among the active jobs, but cancelled
    finally:
        LocalContext.blocks.reset(b)
        LocalContext.event_id.reset(e)
