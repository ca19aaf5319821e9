"""Render creditservice-gateway.conf.template: python3 deploy/nginx/render.py [NAME=VALUE ...] > gateway.conf

Only the template's own ${NAME} placeholders are replaced (nginx's $variables are left alone); a
placeholder without a value, or a NAME the template does not have, is an error.
"""

import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("creditservice-gateway.conf.template")
DEFAULTS = {
    "GATEWAY_LISTEN": "8080",
    "CREDITSERVICE_ADDR": "127.0.0.1:8000",
    "CREDITSERVICE_HOST": "localhost",
    "UPSTREAM_ADDR": "127.0.0.1:9000",
    "ACCESS_LOG": "/var/log/nginx/creditservice-gateway.access.log",
    "WHEN_UNREACHABLE": "@credits_fail_closed",
}
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def render(**values: str) -> str:
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"the template has no {', '.join(sorted(unknown))}")
    merged = {**DEFAULTS, **values}
    return _PLACEHOLDER.sub(lambda match: merged[match.group(1)], TEMPLATE.read_text())


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[1:])
    sys.stdout.write(render(**pairs))
