"""The consuming side of the webhook inbox: how a flow reads its event and records what became of it."""
