"""The command centre's dispatch desk: the case queue, the case view with the actions a user may
take, cross-channel duplicates and their merging, audited reveals of phones, saved views.

Built on :mod:`layers.incidents` (the closed loop itself); nothing here imports the web layer.
"""
