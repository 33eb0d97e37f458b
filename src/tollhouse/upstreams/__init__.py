"""Upstreams: services behind Tollhouse, reached through kit's forwarding engine.

- the clockchain at /api/v1/clockchain/* (`clockchain.py`);
- the operator's own services from UPSTREAMS at /api/v1/upstreams/{name}/* (`operator.py`);
- developers' APIs registered per project, called by end users at /gw/{project}/*
  (`platform.py`, managed through the Developer API).
"""
