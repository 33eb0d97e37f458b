"""Credits: accounts, the append-only transaction log, holds, costs, the internal credits API."""
