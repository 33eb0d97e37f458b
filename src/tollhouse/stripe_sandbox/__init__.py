"""A local stand-in for Stripe, for development and the tests (never production).

`STRIPE_SANDBOX=1 make run` starts it beside the server (`beside.py`);
`tollhouse stripe-sandbox` runs it alone (`command.py`). It speaks Stripe's wire format to the
unmodified `stripe` SDK (`api.py`), keeps its objects in memory (`state.py`), serves the pages a
person clicks (`pages.py`) and delivers signed webhooks (`webhooks.py`).
"""
