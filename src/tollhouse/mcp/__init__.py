"""The MCP server at /mcp/ (Streamable HTTP, the official `mcp` SDK), mounted in the app.

`server.py` mounts it and authenticates every request through the Caller resolution;
`toolkit.py` is what a tool gets (the caller, a session, the domains); `tools.py` lists the
tools, one small function each over a domain's service.
"""
