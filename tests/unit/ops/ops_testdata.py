"""Shared test data of the ops unit tests (importable: pytest puts this directory on sys.path)."""

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
