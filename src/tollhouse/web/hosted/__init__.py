"""Hosted end-user pages per publishable key (platform-contract §1.5): the pages the SDK's
`auth.getSignUpUrl / getSignInUrl / getCustomerPortalUrl / getRefreshUrl` send people to."""
