"""Slipway operations: `invoke --list` is the menu. Each task lives in ops/tasks/."""

from invoke.collection import Collection

from ops.tasks import apikey, bench, certs, db, images, stack

ns = Collection()

# The local stack, end to end.
ns.add_task(stack.up)
ns.add_task(stack.down)
ns.add_task(stack.status)
ns.add_task(stack.logs)
ns.add_task(stack.build)

# Parts of it, one at a time.
ns.add_collection(Collection.from_module(images, name="images"))
ns.add_collection(Collection.from_module(certs, name="certs"))
ns.add_collection(Collection.from_module(db, name="db"))
ns.add_collection(Collection.from_module(apikey, name="apikey"))
ns.add_collection(Collection.from_module(bench, name="bench"))
