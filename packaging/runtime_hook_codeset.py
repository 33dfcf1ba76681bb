# In the frozen app: use the code set compiled at build time (the source package is not bundled)
# unless the user points elsewhere.
import os
import sys

bundled = os.path.join(getattr(sys, "_MEIPASS", ""), "codeset.sqlite")
if os.path.isfile(bundled):
    os.environ.setdefault("ICD10_CODER_CODESET", bundled)
