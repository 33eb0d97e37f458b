"""Apple in-app purchases: StoreKit 2 signed transactions and App Store Server Notifications."""
