"""The scene agents: each one LLM call (or a small fan-out) returning a typed model.

Agents take the run's `RunLLM` and the typed results they build on, never the whole context,
so each can be exercised on its own; `generation.scene` wires them into the step graph.
"""
