"""Helpers shared by the test tiers: waiting on real state, building fixtures."""
