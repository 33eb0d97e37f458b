"""The hosted dashboard's backend: the Developer API under /console/api/v1."""
