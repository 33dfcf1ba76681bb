"""Model layer shared by the builder and the desktop app.

Nothing imported here may pull in torch: the app ships without it.
"""
