"""Audits: re-read a topic, re-decide its messages with the recorded (or chosen)
model and configuration, report what changed, and re-feed dead letters."""
