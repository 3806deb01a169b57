"""Disposable deploy hosts on this machine (`invoke sandbox.up`, `sandbox.down`): containers
with sshd and their own Docker engine, and the ACME test server and image registry they use.

    names.py            what a sandbox calls its things: containers, labels, roles, domains
    plan.py             which hosts to keep, start, remove; what `docker inspect` says of them
    files.py            the sandbox's files: environment, secrets, login key, known_hosts
    build.py            its three images: tags (digests of their inputs) and builds
    engine.py           the local Docker engine: containers, the network, removal, cgroups
    hosts.py            the hosts: start, wait for dockerd and sshd, host keys, SSH login
    servers.py          what the ACME server and the registry share: options, certificate,
                        reuse or replace, waiting over HTTPS
    acme_server.py      the ACME test server (pebble) of --tls=acme
    registry_server.py  the image registry of --registry: htpasswd, certificate, certs.d
    up.py               `sandbox.up`: the SandboxUp operation (ops.steps) and up()
    access.py           what up prints at the end: how to reach hosts and servers
    down.py             `sandbox.down`

The S3 server of the backup tests is not here: tests/e2e/s3_server.py runs it.
"""
