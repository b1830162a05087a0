"""Hostile input to every endpoint: each gets an error, the server stays up, the next request works."""
import pytest

from tests.test_app import served  # noqa: F401  (the module-scoped running app)

HUGE = 10**30
BIG_TEXT = "1," * 200_000
CASES = {
    "/face": [("x", 1.0), ([], 1.0), ({}, 1.0), ("", 1.0), (HUGE, 1.0), (-HUGE, 1.0), (float("nan"), 1.0),
              (float("inf"), 1.0), ("../etc/passwd", 1.0), ("1\x00", 1.0), (1, "psi"), (1, float("nan"))],
    "/grid": [("x", 4, 4, 1.0), (0, "four", 4, 1.0), (0, 4, float("inf"), 1.0), (-5, 4, 4, 1.0), (HUGE, 2, 2, 1.0),
              (0, -1, 4, 1.0), (None, 4, 4, 1.0)],
    "/zip": [(HUGE, 0, 1.0), (-1, 0, 1.0), (1, "../../x", 1.0), (float("nan"), 0, 1.0), ("1000; rm -rf /", 0, 1.0),
             (10, 0, -1.0)],
    "/morph": [("", 4, "gif", 1.0), (BIG_TEXT, 4, "gif", 1.0), ("1-100000", 4, "gif", 1.0), ("3,7", float("nan"), "gif", 1.0),
               ("3,7", 4, "../../x", 1.0), ("3\n7", 4, "gif", 1.0), ("3,7", 4, "gif", HUGE), (None, 4, "gif", 1.0)],
}


@pytest.mark.parametrize("endpoint,args", [(e, a) for e, cases in CASES.items() for a in cases],
                         ids=lambda v: str(v)[:30])
def test_hostile_input_is_refused_and_the_server_survives(served, endpoint, args):  # noqa: F811
    client, engine, _ = served
    with pytest.raises(Exception) as info:  # gradio_client raises AppError or a protocol error
        client.predict(*args, api_name=endpoint)
    message = str(info.value)
    assert message and len(message) < 500 and "Traceback" not in message
    big, png, caption = client.predict(5, 1.0, api_name="/face")
    assert caption.startswith("**Seed 5**")
