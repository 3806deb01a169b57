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

# staging on one SSH host with nothing else set.
ONE_HOST = """\
name: staging
target: ssh
listings_env: staging
domains: [app.example.org]
hosts:
  - ssh: deploy@203.0.113.10
"""

# The local settings on one SSH host, deploy@203.0.113.10.
STAGING_YAML = (
    LOCAL_YAML.replace("target: local", "target: ssh").replace("name: local", "name: staging")
    + "hosts:\n  - ssh: deploy@203.0.113.10\n"
)

# Secrets that pass every rule of ops.secrets (long, not placeholders).
GOOD_SECRETS = {
    "POSTGRES_PASSWORD": "p" * 8 + "Q3x9Lm2Vb7Nc4Zs1",
    "REDIS_PASSWORD": "r" * 8 + "T5y8Ui2Op4As6Df1",
    "LISTINGS_API_KEY_PEPPER": "k" * 8 + "G7h2Jk5Lq8Wz3Xc6Vb9Nm1Rt4Ye6Pa0",
    "BACKUP_PASSPHRASE": "b" * 8 + "N4m7Qw2Er5Ty8Ui1Op3As6Df9Gh0Jk",
}
# Content tags of every infrastructure image a release with monitoring runs.
IMAGE_TAGS = {
    "SLIPWAY_POSTGRES_TAG": "c.1",
    "SLIPWAY_REDIS_TAG": "c.2",
    "SLIPWAY_NGINX_TAG": "c.3",
    "SLIPWAY_LOGS_TAG": "c.4",
    "SLIPWAY_PROMETHEUS_TAG": "c.5",
    "SLIPWAY_ALERTMANAGER_TAG": "c.6",
    "SLIPWAY_EXPORTERS_TAG": "c.7",
}
