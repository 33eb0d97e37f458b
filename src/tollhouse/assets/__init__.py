"""Project assets (images for tiers, products and hosted pages): records here, bytes on
kit's storage port."""
