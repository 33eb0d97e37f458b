"""The developer console as server-rendered pages (`/console/...`): a client of the same
Developer API handlers and domain services as `/console/api/v1`."""
