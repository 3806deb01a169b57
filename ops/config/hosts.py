"""`hosts:` of a `target: ssh` environment: each ssh destination, key and Swarm address."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ops import paths
from ops.config.model import Host
from ops.config.reader import Reader, is_hostname, is_ip, kind

# Login names as useradd accepts them; never starting with '-', so never read as an ssh option.
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
# user@host[:port], host possibly an IPv6 address in brackets.
_SSH_RE = re.compile(r"^(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:@\[\]]*)(?::(?P<port>.*))?$")


def read_hosts(reader: Reader, top: Mapping[str, Any], name: str, target: str) -> tuple[Host, ...]:
    value = top.get("hosts")
    if target == "local":
        if value is not None:
            reader.fail(
                "hosts",
                "is set but target is local (the stack runs on this machine)",
                "remove hosts, or set target: ssh to deploy to them",
            )
        return ()
    example = "hosts: [{ssh: deploy@203.0.113.10}]"
    if not isinstance(value, list) or not value:
        reader.fail(
            "hosts",
            f"must be a non-empty list for target: {target}, got {kind(value)}",
            f"list the machines to deploy to, e.g. {example}",
        )
    hosts: list[Host] = []
    for index, item in enumerate(value):
        where = f"hosts[{index}]"
        data = reader.mapping(item, where)
        reader.check_keys(
            data, where, required={"ssh"}, optional={"identity", "known_hosts", "swarm_address"}
        )
        user, address, port = _ssh_destination(reader, data, f"{where}.ssh")
        identity = None
        if data.get("identity") is not None:
            text = reader.string(data, "identity", where=f"{where}.identity")
            identity = reader.local_path(text, f"{where}.identity")
        known_hosts = paths.env_state_dir(name) / "known_hosts"
        if data.get("known_hosts") is not None:
            text = reader.string(data, "known_hosts", where=f"{where}.known_hosts")
            known_hosts = reader.local_path(text, f"{where}.known_hosts")
        swarm_address = ""
        if data.get("swarm_address") is not None:
            swarm_address = reader.string(data, "swarm_address", where=f"{where}.swarm_address")
            swarm_address = swarm_address.strip()
            if not is_ip(swarm_address):
                reader.fail(
                    f"{where}.swarm_address",
                    f"{swarm_address!r} is not an IP address (Docker Swarm advertises addresses, "
                    "not names)",
                    "write the address the other hosts reach this one at (private network), "
                    "e.g. 10.0.0.11",
                )
        host = Host(user, address, port, identity, known_hosts, swarm_address)
        for earlier in hosts:
            if (earlier.address, earlier.port) == (address, port):
                reader.fail(
                    f"{where}.ssh",
                    f"names {host.label}, already listed as {earlier.label}",
                    "list each host once",
                )
        hosts.append(host)
    if len(hosts) > 1:
        for index, host in enumerate(hosts):
            if not host.swarm_address and not is_ip(host.address):
                reader.fail(
                    f"hosts[{index}].swarm_address",
                    f"is missing and hosts[{index}].ssh names {host.address!r}, not an IP address: "
                    "several hosts form a Docker Swarm, which advertises each host by address",
                    "add `swarm_address: <its IP on the network the hosts share>`, e.g. 10.0.0.11",
                )
    return tuple(hosts)


def _ssh_destination(reader: Reader, data: Mapping[str, Any], where: str) -> tuple[str, str, int]:
    text = reader.string(data, "ssh", where=where).strip()
    expected = "user@host[:port], e.g. deploy@203.0.113.10:22 or deploy@[2001:db8::10]:22"
    match = _SSH_RE.match(text)
    if not match:
        reader.fail(where, f"{text!r} is not {expected}", f"write {expected}")
    user, host, port_text = match.group("user"), match.group("host"), match.group("port")
    if not user:
        reader.fail(
            where, f"{text!r} names no login user", f"write {expected} (the user comes first)"
        )
    if not _USER_RE.match(user):
        reader.fail(
            where,
            f"user {user!r} is not a login name",
            "use letters, digits, '_', '.', '-', not starting with '-' or a digit",
        )
    if host.startswith("["):
        try:
            address = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            reader.fail(where, f"{host} is not an IPv6 address", f"write {expected}")
    elif port_text is not None and ":" in port_text:
        reader.fail(where, f"{text!r}: an IPv6 address needs brackets", f"write {expected}")
    else:
        address = host.lower()
        numeric = bool(re.fullmatch(r"[0-9.]+", address))
        if not is_hostname(address) or (numeric and not is_ip(address)):
            reader.fail(where, f"{host!r} is not a host name or IP address", f"write {expected}")
    port = 22
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            reader.fail(
                where,
                f"port {port_text!r} is not a port number between 1 and 65535",
                f"write {expected}",
            )
        port = int(port_text)
    return user, address, port
