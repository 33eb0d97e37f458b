"""The `tollhouse` command line, one module per area; `tollhouse.cli` registers them.

Each module imports only `typer` at load time and the application inside the command that
runs, so `tollhouse --help` never pays for SQLAlchemy, FastAPI or the SDKs.
"""
