"""Deploys to several hosts with Docker Swarm (`target: ssh` with more than one host).

The first host manages the swarm and runs the data stores, nginx and certbot (their volumes are
local to it); API replicas and workers spread over every host.

- stackfile: the release's stack files and the one-off overlay, rendered here
- cluster: the swarm through its manager: forming it, service states, waiting to converge
- operation: `SwarmDeploy`, the deploy and rollback steps and their tables
"""
