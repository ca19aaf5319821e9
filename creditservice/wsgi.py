"""WSGI entry point.

Service calls (`Authorization: Bearer …` on /api/) go through a handler with a lean middleware
stack: sessions, CSRF, messages and clickjacking protection serve browsers only. The profile put
~18% of a worker's CPU in middleware; skipping it gave +5% admission pairs/s (docs/performance.md).
Everything else — the admin, the
portal, the API used with a browser session — keeps the full stack from settings.MIDDLEWARE.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditservice.settings")

from creditservice.lib.lean_handler import route_service_calls  # noqa: E402

application = route_service_calls(get_wsgi_application())
