"""Django's ASGI application for the reference settings, with the streaming view mounted."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reference_impl.settings")
application = get_asgi_application()
