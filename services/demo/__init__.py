"""The demo business kefu ships with: the domain pack (intents, FAQ) of an online store
and its ERP on SQLite. Stand-ins for a real company's content and systems."""
