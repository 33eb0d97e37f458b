"""The Platform API (`/api/…`): what `@dream-api/sdk` calls with a project's keys."""
