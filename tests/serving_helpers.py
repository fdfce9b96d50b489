"""Helpers shared by the serving tests."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client: TestClient, data: bytes, name: str = "scene.png") -> Response:
    return client.post("/api/images", files={"file": (name, data, "application/octet-stream")})
