"""Environment files: environments/<name>.yaml loaded into typed, validated dataclasses.

Every error names the file, the field and the fix. `target: local` runs the stack on this
machine's engine; `target: ssh` deploys it to `hosts` (docs/architecture.md, "Deploys to hosts").
Sections a target does not use are either refused (`hosts` on local) or ignored (`deploy` on
local), never silently misread.

Callers use this package's names (`config.load(name)`, `config.Environment`, `config.Host`);
the modules:

- model.py: the dataclasses (`Environment` and one per section) and `parse_size`;
- reader.py: `Reader`, typed access to the YAML with file/field/fix errors, and the shape
  checks every section shares (DNS names, IP addresses);
- loading.py: `load`, `available` and `parse` (the top level, then each section in order);
- hosts.py: `hosts:` (ssh destinations, keys, Swarm addresses);
- tls.py: `acme:`, `public_url:` and `connect_to:`;
- registry.py: `registry:`;
- backup.py: `backup:` and `backup.s3`;
- sections.py: `listings_env`, `ports`, `replicas`, `nginx`, `resources`, `monitoring`, `deploy`.
"""

from __future__ import annotations

from ops.config.loading import available, load, parse
from ops.config.model import (
    COMPRESS_TYPES,
    DEFAULT_REMOTE_ROOT,
    LETSENCRYPT_DIRECTORY,
    LISTINGS_ENVS,
    MAX_RENEW_BEFORE_DAYS,
    RESOURCE_SERVICES,
    S3_URI_STYLES,
    TARGETS,
    TLS_MODES,
    WEEKDAYS,
    Acme,
    Backup,
    Deploy,
    Environment,
    Host,
    Limits,
    Monitoring,
    Nginx,
    Ports,
    Registry,
    Replicas,
    Resources,
    S3Repository,
    parse_size,
)

__all__ = [
    "COMPRESS_TYPES",
    "DEFAULT_REMOTE_ROOT",
    "LETSENCRYPT_DIRECTORY",
    "LISTINGS_ENVS",
    "MAX_RENEW_BEFORE_DAYS",
    "RESOURCE_SERVICES",
    "S3_URI_STYLES",
    "TARGETS",
    "TLS_MODES",
    "WEEKDAYS",
    "Acme",
    "Backup",
    "Deploy",
    "Environment",
    "Host",
    "Limits",
    "Monitoring",
    "Nginx",
    "Ports",
    "Registry",
    "Replicas",
    "Resources",
    "S3Repository",
    "available",
    "load",
    "parse",
    "parse_size",
]
