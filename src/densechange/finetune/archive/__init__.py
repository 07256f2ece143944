"""Prediction at archive scale: many pairs dealt to the processes of ``torchrun``, large scenes in bands, resume.

:mod:`.jobs` turns the config into pairs, :mod:`.plan` cuts them into units (whole scenes, bands of a
large scene) and skips what :mod:`.manifest` records as done, :mod:`.deal` gives each process its
share, :mod:`.parts` writes a band and joins a scene's bands into its outputs, :mod:`.run` does one
process's share.
"""
