"""Backups, restores and drills with pgBackRest, on a local stack, one host or a swarm
(docs/disaster-recovery.md). The work happens in the stack's own containers (services/postgres);
this package decides what runs there, in which order, checks what can be checked before
anything changes, and asks before anything is lost.

- repository.py: what the image's tools report, read (pure): `pgbackrest info`, the OK line,
  advice on failures, the listing; the tools' service names. The deploy code imports from here.
- commands.py: the commands run in the containers and on the hosts (pure builders), and the
  tools' arguments from --type, --at and --repo.
- targets.py: how the operations reach a stack: local compose, a host's compose over SSH, a
  swarm's task containers and replica counts.
- backups.py: `invoke backup` (an Operation), `backup.list`, `backup.drill`, and the reads of
  a stack's repository the restores start from.
- inplace.py: what replacing the live database takes: the confirmation, and the steps around
  the replacement (maintenance, writers stopped, schema migrated, writers started).
- restore.py: `invoke restore` from the environment's own backups: plan, confirmation, steps.
- sanitized_copy.py: `invoke restore --from=<env> --sanitize`: another environment's data,
  personal data replaced.
- operations.py: transitional, the names the deploy code still imports from there.
"""
