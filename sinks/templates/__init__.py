"""Jinja2 templates of the acknowledgement page (sinks/ack_page.py); package data."""
