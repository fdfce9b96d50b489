"""The web demo: a FastAPI server around one model, and a static page to click on images with."""

from semsam.serving.app import create_app
from semsam.serving.limits import ServeLimits

__all__ = ["ServeLimits", "create_app"]
