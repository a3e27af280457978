"""Core: the pure nouns and decisions (policy, verdict, plan, slot, layout, domain, host report)."""
