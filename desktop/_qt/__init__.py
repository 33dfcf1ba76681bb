"""Qt views of the app. Everything here talks to Qt-free models in `desktop/` and `models/`."""
