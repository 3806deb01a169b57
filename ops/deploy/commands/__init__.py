"""Command builders of the deploy: pure functions that return the `Command` (shell line, what
it does, whether it changes the host) of each host operation. Nothing here runs anything: the
executor of a host (ops/executor.py, ops/remote.py) does, echoing the changes with their host.

- compose: `docker compose` of one release directory on a host
- docker: containers, images, volumes and networks of the host's engine
- nginx: find, test and reload the stack's nginx, its drained workers, the upstream file
- host: facts about the host (versions, disk, ports, writable directories) and plain files
- swarm: forming the swarm, stack deploys, service and task states
"""
