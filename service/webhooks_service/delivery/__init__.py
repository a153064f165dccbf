"""Delivery workers: claim, sign, POST, log the attempt, schedule the retry."""
