"""Time travel: the same place a while later or earlier, and the chain of moments."""
