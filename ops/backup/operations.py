"""Transitional: ops/deploy/deployment.py imports these four names from here. Their place is
ops/backup/repository.py; delete this module once the deploy code (rewritten meanwhile, issue
14) imports them from there.
"""

from ops.backup.repository import RESTORE_SERVICE as RESTORE_SERVICE
from ops.backup.repository import advice as advice
from ops.backup.repository import parse_info as parse_info
from ops.backup.repository import require_ok as require_ok
