"""Shared test data of the ops unit tests (importable: pytest puts this directory on sys.path)."""

from collections.abc import Callable
from pathlib import Path

# The `write_env` fixture of conftest.py: write_env(name, yaml_text) -> the file written.
WriteEnv = Callable[[str, str], Path]

LOCAL_YAML = """\
name: local
target: local
tls: local-ca
domains: [localhost]
bind: 127.0.0.1
ports: {http: 8080, https: 8443}
replicas: {api: 2, worker: 1}
nginx: {rate_limit: 50, rate_burst: 100, max_feed_size: 64m}
"""

# The local settings on one SSH host, deploy@203.0.113.10.
STAGING_YAML = (
    LOCAL_YAML.replace("target: local", "target: ssh").replace("name: local", "name: staging")
    + "hosts:\n  - ssh: deploy@203.0.113.10\n"
)
