"""The desktop app for medical coders (PySide6): views and workers that call models/ only."""
