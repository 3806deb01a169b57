"""Load tests that gate releases: run loadtests/locustfile.py headless, judge it against SLOs.

`python -m ops.perf.loadtest --env=<name> --profile=<smoke|baseline|stress>` loads the profile
(loadtests/profiles.yaml) and the SLOs (loadtests/slo.yaml), checks that the profile stays
within the environment's nginx rate limits when it claims to, runs locust against the
environment's HTTPS URL with its CA, writes CSV and HTML reports, prints one line per endpoint
and exits 1 naming every breach. A run that sent nothing, or left an endpoint of its users
unexercised, is a breach too: a load test that did not load must not pass.

locust is run as a separate process (it monkey-patches the standard library with gevent when
imported). The modules:

- users.py: what the locustfile and the gate share (request names, user classes, variables);
- files.py: profiles.yaml and slo.yaml, read and validated;
- results.py: locust's CSV reports parsed, judged against the SLOs, printed as a table;
- gate.py: the run (check, plan, locust, judge) and the command line (`main`);
- __main__.py: `python -m ops.perf.loadtest`.
"""

from __future__ import annotations

from ops.perf.loadtest.files import (
    LOCUSTFILE,
    PROFILES_FILE,
    SLO_FILE,
    Profile,
    Slo,
    SloSet,
    load_profile,
    load_profiles,
    load_slos,
    run_time_seconds,
)
from ops.perf.loadtest.gate import (
    DEFAULT_REPORTS,
    EXIT_BREACH,
    EXIT_ERROR,
    Options,
    Outcome,
    ca_file,
    check_rate_limits,
    locust_command,
    main,
    parse_args,
    report_prefix,
    run,
    zone_limits,
)
from ops.perf.loadtest.results import (
    EndpointStats,
    Verdict,
    evaluate,
    parse_failures,
    parse_stats,
    table,
)
from ops.perf.loadtest.users import (
    AGGREGATED,
    API_KEY_VAR,
    CA_VAR,
    DETAIL,
    DETAIL_PATH,
    INGEST,
    INGEST_PATH,
    INGEST_STATUS,
    INGEST_STATUS_PATH,
    SEARCH,
    SEARCH_PATH,
    USERS,
    VIEWER,
    VIEWER_PATH,
    UserModel,
    allocation,
    enabled_users,
    expected_endpoints,
    zone_rates,
)

__all__ = [
    "AGGREGATED",
    "API_KEY_VAR",
    "CA_VAR",
    "DEFAULT_REPORTS",
    "DETAIL",
    "DETAIL_PATH",
    "EXIT_BREACH",
    "EXIT_ERROR",
    "INGEST",
    "INGEST_PATH",
    "INGEST_STATUS",
    "INGEST_STATUS_PATH",
    "LOCUSTFILE",
    "PROFILES_FILE",
    "SEARCH",
    "SEARCH_PATH",
    "SLO_FILE",
    "USERS",
    "VIEWER",
    "VIEWER_PATH",
    "EndpointStats",
    "Options",
    "Outcome",
    "Profile",
    "Slo",
    "SloSet",
    "UserModel",
    "Verdict",
    "allocation",
    "ca_file",
    "check_rate_limits",
    "enabled_users",
    "evaluate",
    "expected_endpoints",
    "load_profile",
    "load_profiles",
    "load_slos",
    "locust_command",
    "main",
    "parse_args",
    "parse_failures",
    "parse_stats",
    "report_prefix",
    "run",
    "run_time_seconds",
    "table",
    "zone_limits",
    "zone_rates",
]
