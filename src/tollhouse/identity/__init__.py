"""Who is calling: users, tokens, external issuers, service keys, signed gateways, the Caller."""
