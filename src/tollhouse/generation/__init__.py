"""Scene generation: timepoints made by a pipeline of LLM agents (flash-contract §4)."""
