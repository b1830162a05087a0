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
    from demo.admission import client_of
    from demo.settings import Settings

    behind = SimpleNamespace(client=SimpleNamespace(host="10.16.3.80"),
                             headers={"x-forwarded-for": "203.0.113.7, 10.16.3.80"})
    assert client_of(behind) == "10.16.3.80"  # not trusted: the connection's address
    assert client_of(behind, trust_proxy=True) == "203.0.113.7"
    direct = SimpleNamespace(client=SimpleNamespace(host="192.0.2.1"), headers={})
    assert client_of(direct, trust_proxy=True) == "192.0.2.1"
    for name in ("ANIME_GAN_TRUST_PROXY", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().trust_proxy is False
    monkeypatch.setenv("SPACE_ID", "someone/anime-faces")  # set by Hugging Face in every Space
    assert Settings.from_env().trust_proxy is True
    monkeypatch.setenv("ANIME_GAN_TRUST_PROXY", "0")
    assert Settings.from_env().trust_proxy is False
    monkeypatch.setenv("ANIME_GAN_TRUST_PROXY", "maybe")
    with pytest.raises(UserError, match="ANIME_GAN_TRUST_PROXY"):
        Settings.from_env()
