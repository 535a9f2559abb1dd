"""Model discovery: list each endpoint's models and reconcile them with the store."""
