"""One system prompt and one user-prompt builder per agent (the agents live in `agents/`)."""
