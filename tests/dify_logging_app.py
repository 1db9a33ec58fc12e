"""The gevent example app with logging set up as Dify's api sets it up.

Dify's app patches with gevent first, then its logging extension configures the root
logger at INFO with a stream handler: a handler made after the patch, so every line
logged from any thread takes a lock gevent made. Run it with gunicorn as
``dify_logging_app:app`` with this directory on PYTHONPATH.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import sys  # noqa: E402

logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s %(levelname)s [%(threadName)s] [%(filename)s:%(lineno)d] - %(message)s",
    handlers=[logging.StreamHandler(sys.stdout)],
    force=True,
)

from chatspan.examples.dify_gevent import app  # noqa: E402

__all__ = ["app"]
