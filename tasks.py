"""Slipway operations: `invoke --list` is the menu. Each task lives in ops/tasks/."""

from invoke.collection import Collection

from ops.tasks import apikey, bench, certs, db, images, lock, monitor, sandbox, stack
from ops.tasks import backup as backups
from ops.tasks import deploy as deploys

ns = Collection()

# The local stack, end to end.
ns.add_task(stack.up)
ns.add_task(stack.down)
ns.add_task(stack.status)
ns.add_task(stack.logs)
ns.add_task(stack.build)
ns.add_task(monitor.show)

# Hosts over SSH: deploy, roll back, inspect.
ns.add_task(deploys.deploy)
ns.add_task(deploys.rollback)
ns.add_task(deploys.releases)
ns.add_task(deploys.version)
ns.add_task(deploys.maintenance)
ns.add_collection(Collection.from_module(lock, name="lock"))

# Backups and restores (pgBackRest): `invoke backup` is backup.run.
ns.add_collection(Collection("backup", backups.run, backups.list_, backups.drill))
ns.add_task(backups.restore)

# Parts of it, one at a time.
ns.add_collection(Collection.from_module(images, name="images"))
ns.add_collection(Collection.from_module(certs, name="certs"))
ns.add_collection(Collection.from_module(db, name="db"))
ns.add_collection(Collection.from_module(apikey, name="apikey"))
ns.add_collection(Collection.from_module(bench, name="bench"))
ns.add_collection(Collection.from_module(sandbox, name="sandbox"))
