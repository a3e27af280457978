"""Feature: the memslot guard (seccomp listener, classification, tagging, journal, service)."""
