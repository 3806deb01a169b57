"""Reading what the monitoring stack knows: `invoke monitor` (Prometheus and Alertmanager,
through SSH tunnels for hosts) and the search of the central logs (`invoke logs`).
"""
