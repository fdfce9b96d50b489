"""The server under hostile requests: huge vocabularies and headers, half-open connections, exact limits."""

from __future__ import annotations

import copy
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from semsam import SemanticInfo
from semsam.serving import ServeLimits, create_app
from semsam.serving.server import server_config
from semsam.text import parse_vocabulary
from serving_helpers import png_bytes, upload
from test_hardening_inputs import png_with_header

MANY_NAMES = ",".join(f"name{i}" for i in range(80_000))


def test_parsing_a_vocabulary_takes_linear_time():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="repeated: name7$"):
        parse_vocabulary(MANY_NAMES + ",name7")
    assert time.perf_counter() - start < 1.0


def test_an_80k_name_vocabulary_is_refused_at_once(small_model, scene):
    with TestClient(create_app(model=small_model, model_name="small")) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        for path in ("predict", "everything"):
            start = time.perf_counter()
            response = client.post(f"/api/images/{image_id}/{path}",
                                   json={"points": [[60, 45]]} | {"objects": MANY_NAMES} if path == "predict"
                                   else {"parts": MANY_NAMES})
            assert time.perf_counter() - start < 1.0
            assert response.status_code == 422
            assert "has 80000 names; at most 1000 per request" in response.json()["detail"]
        long_name = client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]], "parts": "x" * 101})
        assert long_name.status_code == 422 and "at most 100 characters" in long_name.json()["detail"]
        assert client.post(f"/api/images/{image_id}/predict", json={"points": [[60, 45]]}).status_code == 200


def test_user_vocabularies_are_not_cached_on_disk(small_model, scene, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSAM_CACHE_DIR", str(tmp_path))
    model = copy.deepcopy(small_model)
    model.semantic = SemanticInfo(trained=True, objects=["person"], parts=["head"])
    with TestClient(create_app(model=model, model_name="small")) as client:
        image_id = upload(client, png_bytes(scene)).json()["image_id"]
        for i in range(3):
            body = client.post(f"/api/images/{image_id}/predict",
                               json={"points": [[60, 45]], "objects": f"cat{i},dog{i}"}).json()
            assert {label["object"] for label in body["labels"]} <= {f"cat{i}", f"dog{i}"}
    assert not list(tmp_path.rglob("*.safetensors"))


def test_a_huge_image_header_gets_413(small_model):
    with TestClient(create_app(model=small_model, model_name="small")) as client:
        response = upload(client, png_with_header(100_000, 100_000), "bomb.png")
        assert response.status_code == 413
        assert "above the limit of 16,777,216 pixels" in response.json()["detail"]


def test_info_gives_counts_as_integers(small_model):
    with TestClient(create_app(model=small_model, model_name="small")) as client:
        limits = client.get("/api/info").json()["limits"]
    assert limits["max_pixels"] == 4096 * 4096 and isinstance(limits["max_pixels"], int)
    assert isinstance(limits["max_upload_bytes"], int) and limits["queue_timeout_s"] == 30.0


@pytest.fixture()
def live_server(small_model):
    """A real server on a free port, with a 0.5 s deadline for sending a request."""
    limits = ServeLimits(read_timeout_s=0.5, keep_alive_s=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(server_config(create_app(model=small_model, model_name="small", limits=limits),
                                          host="127.0.0.1", port=port, limits=limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


SLOW_UPLOAD = (b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
               b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n\r\n")


@pytest.mark.parametrize("sent", [b"", b"GET /api/info HTTP/1.1\r\nHost: x\r\n", SLOW_UPLOAD],
                         ids=["nothing", "half_headers", "half_body"])
def test_half_open_and_slow_connections_are_closed(live_server, sent):
    with socket.create_connection(("127.0.0.1", live_server), timeout=5) as connection:
        connection.sendall(sent)
        start = time.monotonic()
        assert connection.recv(1024) == b""  # closed by the server, not by our 5 s timeout
        assert time.monotonic() - start < 3
    assert httpx.get(f"http://127.0.0.1:{live_server}/api/info", timeout=5).status_code == 200
